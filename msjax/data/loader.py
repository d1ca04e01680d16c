"""The grain input pipeline: per-process batches of ``(seed, step)``.

A training run's input is a ``grain.MapDataset`` whose element ``s`` is
``(s, batch)``: this process's block of the global batch at step ``s``. The
element is a pure function of the step (``StepIndices`` picks the example
indices, ``ReadBatch`` reads exactly those records from the source), so

* resuming at step ``s`` is slicing the dataset at ``s`` (the position is the
  step; no iterator state needs saving), and
* the batches do not depend on how many workers read them: grain's worker ``i``
  of ``n`` reads elements ``i, i + n, ...`` and the iterator yields them back in
  step order.

``iterate`` turns the dataset into an iterator that reads ahead: with
``num_workers = 0`` in ``prefetch`` background threads of this process, with
``num_workers > 0`` in that many grain worker processes (spawned; the source
is pickled to them, so it should hold file handles or parameters, not data:
``msjax.data.records.RecordSource`` does). Samplers (uniform epochs, sequences
of consecutive windows) are index functions here; pair-ratio subsets and
unpaired pools are source views (``msjax.data.pairs``) read through the same
dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grain
import numpy as np
from absl import flags

from msjax.data.sequences import SequenceIndex, sequence_batch_indices

__all__ = [
  "ReadBatch",
  "StepIndices",
  "batch_dataset",
  "epoch_permutation",
  "iterate",
  "loader_options",
]


def loader_options() -> dict[str, int]:
  """The input pipeline's ``config.data`` keys, with their defaults.

  ``num_workers``: grain worker processes reading batches (0: background
  threads of the training process, enough when a batch is a cheap read);
  ``prefetch``: batches read ahead (per worker). Every source's
  ``default_config`` includes them.
  """
  return dict(num_workers=0, prefetch=2)


def epoch_permutation(
  num_examples: int, *, seed: int, epoch: int
) -> np.ndarray:
  """The visiting order of epoch ``epoch``, ``int64 [N]``."""
  rng = np.random.default_rng([int(seed), int(epoch)])
  return rng.permutation(num_examples)


class StepIndices:
  """Step -> this process's example indices (a picklable pure function).

  Attributes:
    num_examples: N of the source.
    batch_size: global batch size B (= S * L with ``sequences``).
    seed: data seed.
    process_index: this process's block of the global batch.
    process_count: number of blocks.
  """

  def __init__(
    self,
    num_examples: int,
    *,
    batch_size: int,
    seed: int,
    sequences: SequenceIndex | None = None,
    min_gap: int | None = None,
    shuffle: bool = True,
    process_index: int = 0,
    process_count: int = 1,
  ) -> None:
    """Checks the sizes (see ``msjax.data.pipeline.batch_at`` for the args)."""
    if batch_size < 1 or batch_size > num_examples:
      raise ValueError(
        f"batch_size={batch_size} must be in [1, num_examples="
        f"{num_examples}]; lower the batch size or use more data."
      )
    if process_count < 1 or not 0 <= process_index < process_count:
      raise ValueError(
        f"process_index={process_index} not in [0, {process_count})."
      )
    if batch_size % process_count:
      raise ValueError(
        f"global batch {batch_size} is not divisible by {process_count} "
        "processes; make the batch size a multiple of the process count."
      )
    if sequences is not None and batch_size % sequences.length:
      raise ValueError(
        f"batch_size={batch_size} is not a multiple of sequence_length="
        f"{sequences.length}."
      )
    self.num_examples = int(num_examples)
    self.batch_size = int(batch_size)
    self.seed = int(seed)
    self.sequences = sequences
    self.min_gap = min_gap
    self.shuffle = shuffle
    self.process_index = int(process_index)
    self.process_count = int(process_count)
    self._epoch: tuple[int, np.ndarray] | None = None

  def global_indices(self, step: int) -> np.ndarray:
    """``int64 [B]`` example indices of the global batch at ``step``."""
    if step < 0:
      raise ValueError(f"step={step} must be >= 0.")
    if self.sequences is not None:
      return sequence_batch_indices(
        self.sequences,
        num_sequences=self.batch_size // self.sequences.length,
        seed=self.seed,
        step=step,
        min_gap=self.min_gap,
      )
    epoch, position = divmod(int(step), self.num_examples // self.batch_size)
    start = position * self.batch_size
    return self._order(epoch)[start : start + self.batch_size]

  def _order(self, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s visiting order (the last one is kept)."""
    if not self.shuffle:
      return np.arange(self.num_examples)
    cached = self._epoch  # one read: grain threads share this object
    if cached is None or cached[0] != epoch:
      order = epoch_permutation(self.num_examples, seed=self.seed, epoch=epoch)
      cached = (epoch, order)
      self._epoch = cached
    return cached[1]

  def __call__(self, step: int) -> np.ndarray:
    """``int64 [B / P]``: this process's contiguous block at ``step``."""
    per = self.batch_size // self.process_count
    start = self.process_index * per
    return self.global_indices(step)[start : start + per]

  def __getstate__(self) -> dict[str, Any]:
    return dict(self.__dict__, _epoch=None)  # workers rebuild the cache


class ReadBatch:
  """Step -> ``(step, source.get(indices(step)))`` (a grain map function)."""

  def __init__(self, source: Any, indices: StepIndices) -> None:
    """Reads from ``source`` the examples ``indices`` names."""
    self.source = source
    self.indices = indices

  def __call__(self, step: Any) -> tuple[int, dict[str, Any]]:
    """The element of ``batch_dataset`` at ``step``."""
    step = int(step)
    return step, self.source.get(self.indices(step))


def batch_dataset(
  source: Any, indices: StepIndices, *, num_steps: int
) -> grain.MapDataset:
  """The grain dataset of steps ``0 .. num_steps - 1``.

  Args:
    source: a ``Source`` (reads only the records each ``get`` names).
    indices: the sampler.
    num_steps: the dataset's length (e.g. ``train.total_steps``).

  Returns:
    A ``MapDataset`` whose element ``s`` is ``(s, host batch at s)``.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps={num_steps} must be >= 1.")
  return grain.MapDataset.range(num_steps).map(ReadBatch(source, indices))


def iterate(
  dataset: grain.MapDataset,
  *,
  start_step: int = 0,
  num_workers: int = 0,
  prefetch: int = 2,
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Iterates ``dataset`` from ``start_step`` on, reading ahead.

  Args:
    dataset: from ``batch_dataset``.
    start_step: the first step yielded (the resume position).
    num_workers: grain worker processes (0: threads of this process).
    prefetch: batches read ahead (per worker with ``num_workers > 0``; 0
      reads each batch when it is asked for).

  Returns:
    A grain iterator of ``(step, batch)``, in step order; the same elements
    whatever ``num_workers`` and ``prefetch``.
  """
  if num_workers < 0 or prefetch < 0:
    raise ValueError(
      f"data.num_workers={num_workers} and data.prefetch={prefetch} must be"
      " >= 0."
    )
  if not 0 <= start_step <= len(dataset):
    raise ValueError(f"start_step={start_step} not in [0, {len(dataset)}].")
  rest = dataset[start_step:]
  if num_workers == 0:
    options = grain.ReadOptions(
      num_threads=prefetch, prefetch_buffer_size=prefetch
    )
    return iter(rest.to_iter_dataset(options))
  if not flags.FLAGS.is_parsed():
    # grain's worker processes read absl flags; msjax parses none of its own.
    flags.FLAGS.mark_as_parsed()
  options = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
  workers = grain.MultiprocessingOptions(
    num_workers=num_workers, per_worker_buffer_size=max(prefetch, 1)
  )
  return iter(rest.to_iter_dataset(options).mp_prefetch(workers))
