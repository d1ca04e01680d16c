"""Deterministic, resumable, per-process batching of a ``Source``.

Every batch is a pure function of ``(seed, step)``: the resumable position of an
input pipeline is just the step. The batches are read by grain
(``msjax.data.loader``); this module holds the samplers' definitions:

* uniform: epoch ``e`` visits the examples in the order of
  ``np.random.default_rng([seed, e]).permutation(N)``; step ``s`` takes the ``s
  % (N // B)``-th block of ``B`` of epoch ``s // (N // B)`` (the remainder of an
  epoch is dropped).
* sequence: ``S`` sequences of ``L`` consecutive windows, sequence-major, far
  apart in time (``msjax.data.sequences``, re-exported here).

The global batch is split across processes in contiguous blocks
(``process_index``-th of ``process_count``), matching
``jax.make_array_from_process_local_data`` on a data-sharded mesh.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import jax
import numpy as np

from msjax.data.loader import (
  ReadBatch,
  StepIndices,
  batch_dataset,
  epoch_permutation,
  iterate,
)
from msjax.data.sequences import (
  SequenceIndex,
  sequence_batch_indices,
  sequence_index,
  sequence_index_for,
)

__all__ = [
  "Source",
  "epoch_permutation",
  "global_batch_indices",
  "process_slice",
  "SequenceIndex",
  "sequence_index",
  "sequence_batch_indices",
  "sequence_index_for",
  "step_indices",
  "batch_at",
  "iterate_batches",
]

_ENDLESS = 2**62  # the length of an endless batch dataset


class Source(Protocol):
  """An indexable set of windows (see docs/architecture.md)."""

  modalities: tuple[str, ...]
  num_examples: int
  num_classes: int

  def element_shapes(self) -> dict[str, tuple[int, ...]]:
    """Per-modality shape of one example (no batch axis)."""
    ...

  def get(self, indices: np.ndarray) -> dict[str, Any]:
    """A host batch (numpy) of the given example indices."""
    ...


def global_batch_indices(
  num_examples: int,
  *,
  batch_size: int,
  seed: int,
  step: int,
  shuffle: bool = True,
) -> np.ndarray:
  """Example indices of the global batch at ``step``, ``int64 [B]``.

  Args:
    num_examples: N, size of the source.
    batch_size: B, the global batch size (<= N).
    seed: data seed.
    step: training step (>= 0); the resumable position.
    shuffle: if False, epochs visit examples in order 0..N-1 (evaluation).

  Returns:
    B distinct indices; steps of one epoch are disjoint.
  """
  sampler = StepIndices(
    num_examples, batch_size=batch_size, seed=seed, shuffle=shuffle
  )
  return sampler.global_indices(step)


def process_slice(
  global_indices: np.ndarray,
  *,
  process_index: int | None = None,
  process_count: int | None = None,
) -> np.ndarray:
  """This process's contiguous block of the global batch.

  Args:
    global_indices: ``[B, ...]`` the global batch (indices or arrays).
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).

  Returns:
    ``[B / P, ...]`` rows ``p * B / P ... (p + 1) * B / P - 1``.
  """
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  size = len(global_indices)
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"process_index={index} not in [0, {count}).")
  if size % count:
    raise ValueError(
      f"global batch {size} is not divisible by {count} processes; make the "
      "batch size a multiple of the process count."
    )
  per = size // count
  return global_indices[index * per : (index + 1) * per]


def step_indices(
  source: Source,
  *,
  batch_size: int,
  seed: int,
  sequences: SequenceIndex | None = None,
  min_gap: int | None = None,
  shuffle: bool = True,
  process_index: int | None = None,
  process_count: int | None = None,
) -> StepIndices:
  """The sampler of ``batch_at`` (process defaults: jax's)."""
  return StepIndices(
    source.num_examples,
    batch_size=batch_size,
    seed=seed,
    sequences=sequences,
    min_gap=min_gap,
    shuffle=shuffle,
    process_index=(
      jax.process_index() if process_index is None else process_index
    ),
    process_count=(
      jax.process_count() if process_count is None else process_count
    ),
  )


def batch_at(source: Source, step: int, **kwargs: Any) -> dict[str, Any]:
  """This process's part of the global batch at ``step`` (host numpy).

  The element ``step`` of the grain dataset ``iterate_batches`` reads.

  Args:
    source: the data source.
    step: training step.
    **kwargs: ``step_indices``'s: batch_size (global B, = S * L with
      sequences), seed, sequences (use the sequence sampler with this
      index), min_gap (see ``sequence_batch_indices``), shuffle (uniform
      sampler only; False visits examples in order), process_index,
      process_count (default jax's).

  Returns:
    ``source.get(...)`` of ``B / process_count`` examples.
  """
  return ReadBatch(source, step_indices(source, **kwargs))(step)[1]


def iterate_batches(
  source: Source,
  *,
  batch_size: int,
  seed: int,
  start_step: int = 0,
  num_steps: int | None = None,
  num_workers: int = 0,
  prefetch: int = 2,
  **kwargs: Any,
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields ``(step, batch_at(source, step, ...))`` from ``start_step`` on.

  Read by grain (``msjax.data.loader``) with ``num_workers`` worker processes
  and ``prefetch`` batches read ahead. Resuming at step s yields exactly what
  an uninterrupted run yields there. ``kwargs`` are passed to ``step_indices``.
  """
  end = _ENDLESS if num_steps is None else start_step + num_steps
  sampler = step_indices(source, batch_size=batch_size, seed=seed, **kwargs)
  dataset = batch_dataset(source, sampler, num_steps=end)
  return iterate(
    dataset, start_step=start_step, num_workers=num_workers, prefetch=prefetch
  )
