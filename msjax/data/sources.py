"""In-memory array source: the common backend of the npz and TFDS sources.

A batch (docs/architecture.md) is ``{"signals": {modality: float32 [B, ...]},
"label": int32 [B], "session": int32 [B], "time_index": int32 [B]}``;
``session`` and ``time_index`` are present only when the source has them.
Extension of the Source protocol: ``metadata()`` returns the per-example
``label`` / ``session`` / ``time_index`` columns (numpy, no signals) for
samplers and splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ArraySource", "check_finite"]


def check_finite(name: str, array: np.ndarray) -> None:
  """Raises a one-line ValueError if ``array`` holds NaN or inf.

  Scans ``array`` in blocks of leading rows (about 32 MB each), so a
  memory-mapped array is read once without a full-size temporary.
  """
  if not np.issubdtype(array.dtype, np.floating) or array.ndim == 0:
    return
  row_bytes = max(array[:1].nbytes, 1)
  step = max(1, (32 << 20) // row_bytes)
  bad = 0
  for start in range(0, array.shape[0], step):
    bad += int(np.sum(~np.isfinite(array[start : start + step])))
  if bad:
    raise ValueError(
      f"{name} holds {bad} NaN/inf values; clean or impute the data first."
    )


class ArraySource:
  """Windows held in numpy arrays.

  Attributes:
    modalities: modality names, in the order of ``config.data.modalities``.
    num_examples: N.
    num_classes: number of label classes (0 if unlabelled).
  """

  def __init__(
    self,
    signals: Mapping[str, np.ndarray],
    *,
    modalities: Sequence[str] | None = None,
    label: np.ndarray | None = None,
    session: np.ndarray | None = None,
    time_index: np.ndarray | None = None,
    num_classes: int | None = None,
    name: str = "source",
    rows: np.ndarray | None = None,
  ) -> None:
    """Validates and stores the arrays.

    Args:
      signals: modality -> ``[N, ...]`` array (cast to float32).
      modalities: order and subset of modalities (default: all, sorted as
        given).
      label: ``int [N]``, -1 for unlabelled (default all -1).
      session: ``int [N]`` session/subject ids, or None.
      time_index: ``int [N]`` window index inside the session, or None.
      num_classes: class count (default ``max(label) + 1``).
      name: used in error messages.
      rows: the examples are these rows of the ``signals`` arrays (the
        columns are per example, already selected); ``None``: every row.
        Lets a split of memory-mapped arrays stay on disk.
    """
    modalities = tuple(signals) if modalities is None else tuple(modalities)
    if not modalities:
      raise ValueError(f"{name}: no modalities; list at least one.")
    missing = [m for m in modalities if m not in signals]
    if missing:
      raise ValueError(
        f"{name}: modalities {missing} not in the data (has {list(signals)})."
      )
    arrays = {m: np.asarray(signals[m], dtype=np.float32) for m in modalities}
    sizes = {m: a.shape[0] if a.ndim else -1 for m, a in arrays.items()}
    if len(set(sizes.values())) != 1 or -1 in sizes.values():
      raise ValueError(f"{name}: modalities disagree on N: {sizes}.")
    size = next(iter(sizes.values()))
    if rows is not None:
      rows = np.asarray(rows, dtype=np.int64)
      if rows.ndim != 1 or (
        rows.size and not 0 <= rows.min() <= rows.max() < size
      ):
        raise ValueError(f"{name}: rows outside [0, {size}).")
      size = len(rows)
    for m, a in arrays.items():
      if a.ndim < 2:
        raise ValueError(
          f"{name}: modality {m!r} has shape {a.shape}; expected [N, C, T]."
        )
      check_finite(f"{name}: modality {m!r}", a)
    self._columns: dict[str, np.ndarray] = {}
    if label is None:
      label = np.full(size, -1)
    for key, column in (
      ("label", label),
      ("session", session),
      ("time_index", time_index),
    ):
      if column is None:
        continue
      column = np.asarray(column)
      if column.shape != (size,):
        raise ValueError(
          f"{name}: {key} has shape {column.shape}; expected ({size},)."
        )
      if not np.issubdtype(column.dtype, np.integer):
        if not np.all(np.equal(np.mod(column, 1), 0)):
          raise ValueError(f"{name}: {key} must hold integers.")
      self._columns[key] = column.astype(np.int32)
    labels = self._columns["label"]
    inferred = int(labels.max()) + 1 if size and labels.max() >= 0 else 0
    self.num_classes = inferred if num_classes is None else int(num_classes)
    if self.num_classes and labels.max(initial=-1) >= self.num_classes:
      raise ValueError(
        f"{name}: label {int(labels.max())} >= num_classes="
        f"{self.num_classes}; raise num_classes."
      )
    self.modalities = modalities
    self.num_examples = size
    self._signals = arrays
    self._rows = rows
    self.name = name

  def element_shapes(self) -> dict[str, tuple[int, ...]]:
    """Per-modality shape of one example, e.g. ``{"ppg": (1, 256)}``."""
    return {m: tuple(a.shape[1:]) for m, a in self._signals.items()}

  def metadata(self) -> dict[str, np.ndarray]:
    """The per-example int32 columns (label, and session/time_index if any)."""
    return {k: v.copy() for k, v in self._columns.items()}

  def labels(self) -> np.ndarray:
    """``int32 [N]`` labels (-1 = unlabelled)."""
    return self._columns["label"].copy()

  def get(self, indices: np.ndarray) -> dict[str, Any]:
    """A host batch of the given example indices (numpy)."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (
      indices.min() < 0 or indices.max() >= self.num_examples
    ):
      raise IndexError(
        f"{self.name}: indices outside [0, {self.num_examples})."
      )
    rows = indices if self._rows is None else self._rows[indices]
    batch: dict[str, Any] = {
      "signals": {m: a[rows] for m, a in self._signals.items()}
    }
    for key, column in self._columns.items():
      batch[key] = column[indices]
    return batch

  def subset(self, indices: np.ndarray) -> ArraySource:
    """A source of the examples ``indices`` (same modalities and classes).

    The signal arrays are shared, not copied (a view through row indices),
    so a split of memory-mapped arrays reads only the rows it is asked for.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (
      indices.min() < 0 or indices.max() >= self.num_examples
    ):
      raise IndexError(
        f"{self.name}: indices outside [0, {self.num_examples})."
      )
    out = object.__new__(ArraySource)
    out.__dict__.update(self.__dict__)
    out._columns = {k: c[indices] for k, c in self._columns.items()}
    out._rows = indices if self._rows is None else self._rows[indices]
    out.num_examples = len(indices)
    return out
