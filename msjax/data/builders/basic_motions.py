"""BasicMotions (UEA multivariate archive), from the copy inside ``aeon``.

Obtain: ``pip install aeon`` (msjax's optional extra ``msjax[aeon]``) ships
``aeon/datasets/data/BasicMotions/BasicMotions_{TRAIN,TEST}.ts``; with
``manual_dir=""`` (default) those files are used without importing aeon.
Otherwise put the two ``.ts`` files (timeseriesclassification.com) in
manual_dir.

Raw format (sktime/aeon ``.ts``): ``#`` comments and ``@`` header lines
(including ``@classLabel true Standing Running Walking Badminton``), then after
``@data`` one case per line: 6 dimensions separated by ``:`` (each 100
comma-separated values), the class name last. Dimensions 0-2 are accelerometer
x/y/z, 3-5 gyroscope x/y/z of a smartwatch at 10 Hz (10 s cases).

Preparation: modalities ``acc`` [3, 100] and ``gyro`` [3, 100] as recorded (no
resampling); labels in the ``@classLabel`` order (Standing 0, Running 1,
Walking 2, Badminton 3). Splits: the shipped train (40 cases) and test (40);
"val" = test. Each case is its own session (``time_index`` 0).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable

import ml_collections
import numpy as np

from msjax.data.builders._base import Example, WindowBuilder
from msjax.data.loader import loader_options

__all__ = ["BasicMotions", "aeon_data_dir", "default_config", "read_ts"]

RATE_HZ = 10.0
CLASSES = ("Standing", "Running", "Walking", "Badminton")


def default_config() -> ml_collections.ConfigDict:
  """``config.data`` for BasicMotions (aeon's copy)."""
  return ml_collections.ConfigDict(
    dict(
      source="basic_motions",
      **loader_options(),
      data_dir="~/tensorflow_datasets",
      manual_dir="",
      modalities=("acc", "gyro"),
    )
  )


def aeon_data_dir() -> str | None:
  """Aeon's BasicMotions folder, found without importing aeon (or None)."""
  spec = importlib.util.find_spec("aeon")
  if spec is None or not spec.submodule_search_locations:
    return None
  root = list(spec.submodule_search_locations)[0]
  return os.path.join(root, "datasets", "data", "BasicMotions")


def read_ts(path: str) -> tuple[np.ndarray, list[str], list[str]]:
  """Reads an equal-length ``.ts`` file.

  Returns:
    (``float64 [N, D, T]`` cases, class name per case, the ``@classLabel``
    names in header order).
  """
  cases, labels, names = [], [], []
  in_data = False
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      lower = line.lower()
      if not in_data:
        if lower.startswith("@classlabel"):
          names = line.split()[2:]
        in_data = lower.startswith("@data")
        continue
      *dims, label = line.split(":")
      cases.append([np.asarray(d.split(","), np.float64) for d in dims])
      labels.append(label.strip())
  lengths = {len(d) for case in cases for d in case}
  if len(lengths) != 1:
    raise ValueError(f"{path}: cases of unequal length {sorted(lengths)}.")
  return np.asarray(cases), labels, names


class BasicMotions(WindowBuilder, skip_registration=True):
  """BasicMotions smartwatch accelerometer + gyroscope, 4 classes."""

  name = "basic_motions"
  OBTAIN = (
    "the aeon package (pip install 'msjax[aeon]') or "
    "timeseriesclassification.com"
  )
  EXPECTED = "BasicMotions_TRAIN.ts and BasicMotions_TEST.ts"

  def __init__(self, *, options: dict, data_dir: str, manual_dir: str) -> None:
    """As ``WindowBuilder``; an empty manual_dir means aeon's copy."""
    if not manual_dir:
      manual_dir = aeon_data_dir() or "<aeon not installed>"
    super().__init__(options=options, data_dir=data_dir, manual_dir=manual_dir)

  def _path(self, split: str) -> str:
    return os.path.join(self.manual_dir, f"BasicMotions_{split}.ts")

  def modality_shapes(self) -> dict[str, tuple[int, ...]]:
    """Acc and gyro, ``[3, 100]`` each."""
    return {"acc": (3, 100), "gyro": (3, 100)}

  def class_names(self) -> list[str]:
    """Standing, Running, Walking, Badminton."""
    return list(CLASSES)

  def missing_files(self) -> list[str]:
    """The two ``.ts`` files, if absent."""
    return [
      f"BasicMotions_{s}.ts"
      for s in ("TRAIN", "TEST")
      if not os.path.exists(self._path(s))
    ]

  def split_examples(self) -> dict[str, Iterable[Example]]:
    """The shipped train / test split (val = test)."""
    return {
      "train": self._examples("TRAIN", 0),
      "val": self._examples("TEST", 1000),
      "test": self._examples("TEST", 1000),
    }

  def _examples(self, split: str, first_session: int) -> Iterable[Example]:
    cases, labels, names = read_ts(self._path(split))
    if cases.shape[1:] != (6, 100):
      raise ValueError(
        f"{self._path(split)}: cases of shape {cases.shape[1:]}, expected "
        "(6, 100); is this BasicMotions?"
      )
    unknown = sorted(set(labels) - set(CLASSES))
    if unknown or (names and names != list(CLASSES)):
      raise ValueError(
        f"{self._path(split)}: classes {names or unknown}, expected "
        f"{list(CLASSES)}; is this BasicMotions?"
      )
    for index, (case, label) in enumerate(zip(cases, labels, strict=True)):
      yield {
        "signals": {"acc": case[:3], "gyro": case[3:]},
        "label": CLASSES.index(label),
        "session": first_session + index,
        "time_index": 0,
      }
