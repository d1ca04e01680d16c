"""Deterministic, resumable, per-process batching of a `Source`.

Every batch is a pure function of `(seed, step)`: the resumable position of an
input pipeline is just the step. Two samplers:

* uniform: epoch `e` visits the examples in the order of
  `np.random.default_rng([seed, e]).permutation(N)`; step `s` takes the
  `s % (N // B)`-th block of `B` of epoch `s // (N // B)` (the remainder of an
  epoch is dropped).
* sequence: `S` sequences of `L` consecutive windows, sequence-major, far
  apart in time (`msjax.data.sequences`, re-exported here).

The global batch is split across processes in contiguous blocks
(`process_index`-th of `process_count`), matching
`jax.make_array_from_process_local_data` on a data-sharded mesh.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import jax
import numpy as np

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
  "batch_at",
  "iterate_batches",
]


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


def epoch_permutation(
  num_examples: int, *, seed: int, epoch: int
) -> np.ndarray:
  """The visiting order of epoch `epoch`, `int64 [N]`."""
  rng = np.random.default_rng([int(seed), int(epoch)])
  return rng.permutation(num_examples)


def global_batch_indices(
  num_examples: int,
  *,
  batch_size: int,
  seed: int,
  step: int,
  shuffle: bool = True,
) -> np.ndarray:
  """Example indices of the global batch at `step`, `int64 [B]`.

  Args:
    num_examples: N, size of the source.
    batch_size: B, the global batch size (<= N).
    seed: data seed.
    step: training step (>= 0); the resumable position.
    shuffle: if False, epochs visit examples in order 0..N-1 (evaluation).

  Returns:
    B distinct indices; steps of one epoch are disjoint.
  """
  if batch_size < 1 or batch_size > num_examples:
    raise ValueError(
      f"batch_size={batch_size} must be in [1, num_examples={num_examples}]; "
      "lower the batch size or use more data."
    )
  if step < 0:
    raise ValueError(f"step={step} must be >= 0.")
  steps_per_epoch = num_examples // batch_size
  epoch, position = divmod(int(step), steps_per_epoch)
  order = (
    epoch_permutation(num_examples, seed=seed, epoch=epoch)
    if shuffle
    else np.arange(num_examples)
  )
  return order[position * batch_size : (position + 1) * batch_size]


def process_slice(
  global_indices: np.ndarray,
  *,
  process_index: int | None = None,
  process_count: int | None = None,
) -> np.ndarray:
  """This process's contiguous block of the global batch.

  Args:
    global_indices: `[B, ...]` the global batch (indices or arrays).
    process_index: this process (default `jax.process_index()`).
    process_count: number of processes (default `jax.process_count()`).

  Returns:
    `[B / P, ...]` rows `p * B / P ... (p + 1) * B / P - 1`.
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


def batch_at(
  source: Source,
  step: int,
  *,
  batch_size: int,
  seed: int,
  sequences: SequenceIndex | None = None,
  min_gap: int | None = None,
  shuffle: bool = True,
  process_index: int | None = None,
  process_count: int | None = None,
) -> dict[str, Any]:
  """This process's part of the global batch at `step` (host numpy).

  Args:
    source: the data source.
    step: training step.
    batch_size: global batch size B (= S * L with `sequences`).
    seed: data seed.
    sequences: use the sequence sampler with this index.
    min_gap: see `sequence_batch_indices`.
    shuffle: uniform sampler only; False visits examples in order.
    process_index: this process (default jax's).
    process_count: process count (default jax's).

  Returns:
    `source.get(...)` of `B / process_count` examples.
  """
  if sequences is None:
    indices = global_batch_indices(
      source.num_examples,
      batch_size=batch_size,
      seed=seed,
      step=step,
      shuffle=shuffle,
    )
  else:
    if batch_size % sequences.length:
      raise ValueError(
        f"batch_size={batch_size} is not a multiple of sequence_length="
        f"{sequences.length}."
      )
    indices = sequence_batch_indices(
      sequences,
      num_sequences=batch_size // sequences.length,
      seed=seed,
      step=step,
      min_gap=min_gap,
    )
  local = process_slice(
    indices, process_index=process_index, process_count=process_count
  )
  return source.get(local)


def iterate_batches(
  source: Source,
  *,
  batch_size: int,
  seed: int,
  start_step: int = 0,
  num_steps: int | None = None,
  **kwargs: Any,
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields `(step, batch_at(source, step, ...))` from `start_step` on.

  Resuming at step s yields exactly what an uninterrupted run yields there.
  `kwargs` are passed to `batch_at`.
  """
  step = start_step
  while num_steps is None or step < start_step + num_steps:
    yield (
      step,
      batch_at(source, step, batch_size=batch_size, seed=seed, **kwargs),
    )
    step += 1
