"""Global device batches from a data source, checked before they reach XLA.

Each process reads only its own block of the global batch (element ``step``
of a grain dataset, a pure function of ``(seed, step)``:
:mod:`msjax.data.loader`) and the blocks become one global array with
``jax.make_array_from_process_local_data``.
"""

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from msjax.data import loader, pipeline
from msjax.train import sharding
from msjax.train.errors import DataError

__all__ = ["BatchFeed", "check_batch", "check_source"]


def check_source(source: Any, config: ml_collections.ConfigDict) -> None:
  """Checks that a source provides what the config declares.

  Args:
    source: the data source.
    config: the experiment config (reads ``data.modalities``,
      ``train.batch_size`` and, when the model declares it,
      ``model.num_classes``).

  Raises:
    DataError: modalities or class counts differ, or the source is smaller
      than a batch.
  """
  declared = tuple(config.data.modalities)
  if "num_classes" in config.model and source.num_classes:
    if config.model.num_classes != source.num_classes:
      raise DataError(
        f"data has {source.num_classes} classes but config.model.num_classes"
        f" is {config.model.num_classes}"
      )
  if tuple(source.modalities) != declared:
    raise DataError(
      f"data has modalities {tuple(source.modalities)} but"
      f" config.data.modalities is {declared}"
    )
  if source.num_examples < config.train.batch_size:
    raise DataError(
      f"data has {source.num_examples} examples, fewer than"
      f" train.batch_size={config.train.batch_size}"
    )


def check_batch(
  batch: dict,
  expected_shapes: dict[str, tuple[int, ...]],
  *,
  first_sample: int = 0,
  step: int | None = None,
) -> None:
  """Rejects wrongly shaped or non-finite signals, naming modality and sample.

  Args:
    batch: a host batch.
    expected_shapes: per-modality example shapes (no batch axis).
    first_sample: global index of the batch's first row (for messages).
    step: the step the batch belongs to (for messages).

  Raises:
    DataError: a missing modality, a shape mismatch or a NaN/inf value.
  """
  where = "" if step is None else f" at step {step}"
  for name, shape in expected_shapes.items():
    if name not in batch["signals"]:
      raise DataError(f"batch{where} has no modality {name!r}")
    values = np.asarray(batch["signals"][name])
    if values.shape[1:] != tuple(shape):
      raise DataError(
        f"modality {name!r}{where}: example shape {values.shape[1:]} does not"
        f" match the expected {tuple(shape)}"
      )
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
      row = int(np.argmin(finite))
      kind = "NaN" if np.isnan(values[row]).any() else "inf"
      raise DataError(
        f"{kind} in modality {name!r}, sample {first_sample + row} of the"
        f" global batch{where}"
      )


class BatchFeed:
  """Turns ``(seed, step)`` into a checked, sharded global batch.

  The host batches come from the grain dataset of
  :func:`msjax.data.loader.batch_dataset` (element ``s``: this process's
  block at step ``s``), read ahead by ``config.data.num_workers`` grain
  worker processes (0: ``config.data.prefetch`` threads of this process).
  Asking for the steps in order reads them from the prefetching iterator;
  any other step starts it again there, so the batch at a step never
  depends on what was asked before. Call :meth:`close` at the end.

  Attributes:
    source: the data source.
    sharding: the batch sharding.
    batch_size: the global batch size.
    dataset: the grain ``MapDataset`` of ``(step, host batch)``.
  """

  def __init__(
    self,
    source: Any,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    *,
    seed: int | None = None,
  ) -> None:
    """Prepares the feed.

    Args:
      source: a ``Source``.
      config: the experiment config (reads ``train.batch_size``,
        ``train.total_steps``, ``train.sequence_length``,
        ``train.check_batches``, ``data.num_workers``, ``data.prefetch``).
      mesh: the device mesh.
      seed: the data seed (default ``config.seed``).
    """
    check_source(source, config)
    self.source = source
    self.batch_size = config.train.batch_size
    self.seed = config.seed if seed is None else seed
    self.check = config.train.check_batches
    self.num_workers = int(config.data.num_workers)
    self.prefetch = int(config.data.prefetch)
    if self.num_workers < 0 or self.prefetch < 0:
      raise DataError(
        f"data.num_workers={self.num_workers} and data.prefetch="
        f"{self.prefetch} must be >= 0"
      )
    self.shapes = {k: tuple(v) for k, v in source.element_shapes().items()}
    sequences = None
    if config.train.sequence_length > 1:
      block = getattr(source, "block", None)  # a pair-ratio source's runs
      if block is not None and block < config.train.sequence_length:
        raise DataError(
          f"train.sequence_length={config.train.sequence_length} on a"
          f" pair-ratio source needs data.block >= it (got {block}): pairs"
          " and unpaired rows must come in runs of consecutive windows"
        )
      try:
        sequences = pipeline.sequence_index_for(
          source, config.train.sequence_length
        )
      except ValueError as error:
        raise DataError(f"train.sequence_length: {error}") from None
    self.sharding = sharding.batch_sharding(mesh)
    rows = self.sharding.addressable_devices_indices_map((self.batch_size,))
    starts = [index[0].start or 0 for index in rows.values()]
    stops = [index[0].stop or self.batch_size for index in rows.values()]
    self.first_row = min(starts)
    count = jax.process_count()
    per = self.batch_size // count
    if self.batch_size % count or (
      self.first_row != jax.process_index() * per
      or max(stops) - self.first_row != per
    ):
      raise DataError(
        f"train.batch_size={self.batch_size} cannot be split into"
        f" {count} contiguous per-process blocks on this mesh"
      )
    try:
      indices = pipeline.step_indices(
        source, batch_size=self.batch_size, seed=self.seed, sequences=sequences
      )
    except ValueError as error:
      raise DataError(f"train.batch_size: {error}") from None
    self.dataset = loader.batch_dataset(
      source, indices, num_steps=max(int(config.train.total_steps), 1)
    )
    self._iterator: Any = None
    self._next_step = -1

  def _read(self, step: int) -> dict:
    """The host batch at ``step``: from the iterator when it is there."""
    if step == self._next_step:
      self._next_step += 1
      read, batch = next(self._iterator)
    else:
      read, batch = self.dataset[step]
    if read != step:  # the dataset's contract; a bug if it fails
      raise RuntimeError(f"the input pipeline gave step {read} for {step}")
    return batch

  def host_batch(self, step: int) -> dict:
    """This process's block of the global batch at ``step`` (numpy)."""
    if not 0 <= step < len(self.dataset):
      raise DataError(
        f"step {step} is outside the {len(self.dataset)} steps of"
        " train.total_steps"
      )
    try:
      batch = self._read(step)
    except ValueError as error:
      raise DataError(f"batch at step {step}: {error}") from None
    if self.check:
      check_batch(batch, self.shapes, first_sample=self.first_row, step=step)
    return batch

  def start(self, step: int) -> None:
    """Starts reading ahead from ``step`` (ends a previous iterator)."""
    self.close()
    self._iterator = loader.iterate(
      self.dataset,
      start_step=step,
      num_workers=self.num_workers,
      prefetch=self.prefetch,
    )
    self._next_step = step

  def close(self) -> None:
    """Stops the read-ahead threads or worker processes."""
    iterator, self._iterator, self._next_step = self._iterator, None, -1
    if iterator is not None and hasattr(iterator, "close"):
      iterator.close()

  def global_batch(self, host_batch: dict) -> dict:
    """The global sharded array batch made from every process's block."""

    def to_global(local: np.ndarray) -> jax.Array:
      local = np.asarray(local)
      shape = (self.batch_size, *local.shape[1:])
      return jax.make_array_from_process_local_data(self.sharding, local, shape)

    return jax.tree.map(to_global, host_batch)

  def __call__(self, step: int) -> dict:
    """The checked global batch at ``step`` (read ahead from there on)."""
    if step != self._next_step and 0 <= step < len(self.dataset):
      self.start(step)
    return self.global_batch(self.host_batch(step))
