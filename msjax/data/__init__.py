"""Data: signal processing, sources, TFDS builders and input pipelines.

``make_source(config.data, split)`` builds the source ``config.data.source``
names, through the one explicit dict ``SOURCES``: "synthetic" (the simulated
multimodal generator), "npz" (bring-your-own arrays), "paired" (InfoMAE's
pair-ratio subsets of another source, ``pairing_config``) and every TFDS builder
name of ``msjax.data.builders.BUILDERS`` (prepared on first use from the raw
files in ``config.data.manual_dir``, read back record by record without
TensorFlow). ``switch_source(config.data, name)`` retypes a data section for
another source (what a ``--config.data.source=...`` override does). Batches of
``(seed, step)`` are read through grain: ``msjax.data.loader``.
"""

from collections.abc import Callable
from typing import Any

from msjax.data import (
  alignment,
  loader,
  npz,
  pairs,
  pipeline,
  sequences,
  signal,
)
from msjax.data.errors import MissingDataError
from msjax.data.npz import load_npz
from msjax.data.pairs import (
  PairedSource,
  PairSplit,
  load_pair_split,
  pair_ratio_split,
  pairing_config,
  save_pair_split,
)
from msjax.data.pipeline import (
  Source,
  batch_at,
  global_batch_indices,
  iterate_batches,
  process_slice,
  sequence_batch_indices,
  sequence_index,
  sequence_index_for,
)
from msjax.data.source_config import (
  DATA_CONFIGS,
  default_data_config,
  switch_source,
)
from msjax.data.sources import ArraySource

__all__ = [
  "ArraySource",
  "DATA_CONFIGS",
  "default_data_config",
  "switch_source",
  "alignment",
  "MissingDataError",
  "PairSplit",
  "PairedSource",
  "SOURCES",
  "Source",
  "batch_at",
  "global_batch_indices",
  "iterate_batches",
  "load_npz",
  "load_pair_split",
  "loader",
  "make_source",
  "npz",
  "pair_ratio_split",
  "pairing_config",
  "pairs",
  "pipeline",
  "process_slice",
  "save_pair_split",
  "sequence_batch_indices",
  "sequence_index",
  "sequence_index_for",
  "sequences",
  "signal",
]


def _synthetic(data_config: Any, split: str) -> Any:
  from msjax.data.synthetic import SyntheticSource  # E5's module

  return SyntheticSource(data_config, split)


def _builder_source(data_config: Any, split: str) -> ArraySource:
  from msjax.data import builders

  builder = builders.prepare(builders.builder_for(data_config))
  return builders.read_split(builder, split, tuple(data_config.modalities))


def _paired(data_config: Any, split: str) -> Any:
  return pairs.paired_source(data_config, split, make_source)


#: ``config.data.source`` -> constructor ``(config.data, split) -> Source``. The
#: builder entries are the keys of ``msjax.data.builders.BUILDERS`` (that
#: package imports tensorflow_datasets, so it is loaded only when used).
SOURCES: dict[str, Callable[[Any, str], Any]] = {
  "synthetic": _synthetic,
  "npz": load_npz,
  "paired": _paired,
  "basic_motions": _builder_source,
  "mod_vehicle": _builder_source,
  "pamap2": _builder_source,
  "realworld_har": _builder_source,
  "wesad": _builder_source,
}


def make_source(data_config: Any, split: str) -> Any:
  """The ``split`` ("train", "val", "test") of the source ``config.data`` names.

  Raises:
    ValueError: unknown source name.
    MissingDataError: a real dataset whose raw files are not in manual_dir
      (one line naming the expected files, where to get them and manual_dir).
  """
  if data_config.source not in SOURCES:
    raise ValueError(
      f"config.data.source={data_config.source!r} unknown; use one of "
      f"{sorted(SOURCES)}."
    )
  return SOURCES[data_config.source](data_config, split)
