"""A source read record by record from a prepared TFDS array_record split.

``RecordSource`` opens a split with ``tfds.data_source`` (``as_data_source``, no
TensorFlow) and decodes only the records each ``get`` names: memory does not
grow with the dataset. The per-example ``label`` / ``session`` /
``time_index`` columns (``metadata()``, for samplers and class checks) are read
once, on first use, from the stored protos without decoding signals, and
kept: 12 bytes per record. Batches have the layout of
``msjax.data.sources.ArraySource``. The source pickles as its builder's
location, so grain worker processes reopen the files instead of receiving
data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tensorflow_datasets.proto import tf_example_pb2

__all__ = ["RecordSource"]

_COLUMNS = ("label", "session", "time_index")


class RecordSource:
  """Windows of one prepared split, decoded on demand.

  Attributes:
    modalities: modality names, in the order of ``config.data.modalities``.
    num_examples: N.
    num_classes: number of label classes.
    name: "<builder>/<split>", for messages.
  """

  def __init__(
    self,
    builder: Any,
    split: str,
    modalities: tuple[str, ...],
    *,
    rows: np.ndarray | None = None,
  ) -> None:
    """Opens ``split`` of a prepared builder.

    Args:
      builder: a prepared ``msjax.data.builders.WindowBuilder``.
      split: a split name of the builder.
      modalities: modalities to read, in order.
      rows: ``int [N]`` records of the split this source holds, in order
        (default: all).
    """
    splits = list(builder.info.splits)
    if split not in splits:
      raise ValueError(
        f"{builder.name} has splits {splits}, not {split!r}; pick one of them."
      )
    shapes = builder.modality_shapes()
    unknown = [m for m in modalities if m not in shapes]
    if unknown:
      raise ValueError(
        f"{builder.name} has modalities {list(shapes)}, not {unknown}; fix "
        "config.data.modalities."
      )
    self._builder = builder
    self._split = split
    self._data = builder.as_data_source(split=split)
    size = len(self._data)
    self._rows = None if rows is None else np.asarray(rows, np.int64)
    if (
      self._rows is not None
      and self._rows.size
      and (self._rows.min() < 0 or self._rows.max() >= size)
    ):
      raise IndexError(f"{builder.name}/{split}: rows outside [0, {size}).")
    self.modalities = tuple(modalities)
    self.num_examples = size if self._rows is None else len(self._rows)
    self.num_classes = len(builder.class_names())
    self.name = f"{builder.name}/{split}"
    self._shapes = {m: tuple(shapes[m]) for m in self.modalities}
    self._columns: dict[str, np.ndarray] | None = None

  def __getstate__(self) -> dict[str, Any]:
    # The open reader and the columns stay here; workers reopen the files.
    return dict(self.__dict__, _data=None, _columns=None)

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._data = self._builder.as_data_source(split=self._split)

  def element_shapes(self) -> dict[str, tuple[int, ...]]:
    """Per-modality shape of one example, e.g. ``{"ppg": (1, 256)}``."""
    return dict(self._shapes)

  def _records(self, indices: np.ndarray) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (
      indices.min() < 0 or indices.max() >= self.num_examples
    ):
      raise IndexError(
        f"{self.name}: indices outside [0, {self.num_examples})."
      )
    return indices if self._rows is None else self._rows[indices]

  def get(self, indices: np.ndarray) -> dict[str, Any]:
    """A host batch of the given example indices (reads only those)."""
    records = self._data.__getitems__(self._records(indices).tolist())
    signals = {
      m: np.empty((len(records), *self._shapes[m]), np.float32)
      for m in self.modalities
    }
    columns = {k: np.empty(len(records), np.int32) for k in _COLUMNS}
    for i, record in enumerate(records):
      for m in self.modalities:
        signals[m][i] = record["signals"][m]
      for k in _COLUMNS:
        columns[k][i] = record[k]
    return {"signals": signals, **columns}

  def metadata(self) -> dict[str, np.ndarray]:
    """The per-example int32 columns label, session and time_index."""
    if self._columns is None:
      columns = self._read_columns()
      if self._rows is not None:
        columns = {k: v[self._rows] for k, v in columns.items()}
      self._columns = columns
    return {k: v.copy() for k, v in self._columns.items()}

  def _read_columns(self, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Every record's label/session/time_index, ``chunk`` records at a time.

    Parses the stored ``tf.train.Example`` protos (C) and converts only the
    three int64 features: signals are never turned into arrays.
    """
    raw = self._data.data_source  # the split's array_record reader (bytes)
    size = len(raw)
    columns = {k: np.empty(size, np.int32) for k in _COLUMNS}
    for start in range(0, size, chunk):
      stop = min(size, start + chunk)
      for offset, blob in enumerate(raw.__getitems__(range(start, stop))):
        feature = tf_example_pb2.Example.FromString(blob).features.feature
        for k in _COLUMNS:
          columns[k][start + offset] = feature[k].int64_list.value[0]
    return columns

  def labels(self) -> np.ndarray:
    """``int32 [N]`` labels."""
    return self.metadata()["label"]

  def subset(self, indices: np.ndarray) -> RecordSource:
    """A view holding only ``indices`` (nothing is read)."""
    view = RecordSource(
      self._builder,
      self._split,
      self.modalities,
      rows=self._records(indices),
    )
    if self._columns is not None:
      view._columns = {
        k: v[np.asarray(indices, np.int64)] for k, v in self._columns.items()
      }
    return view
