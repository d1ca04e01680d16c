"""PAMAP2 physical activity monitoring (Reiss & Stricker, ISWC 2012).

Obtain: the UCI Machine Learning Repository page "PAMAP2 Physical Activity
Monitoring"; extract the inner ``PAMAP2_Dataset.zip`` so that manual_dir holds
``Protocol/subject101.dat ... subject109.dat`` (and optionally ``Optional/``).

Raw format: space-separated text, one row per 100 Hz tick, 54 columns (0-based):
0 timestamp (s), 1 activity ID, 2 heart rate, 3-19 IMU hand, 20-36 IMU chest,
37-53 IMU ankle; inside an IMU block: +0 temperature, +1..3 acc +-16 g (m/s^2),
+4..6 acc +-6 g, +7..9 gyroscope (rad/s), +10..12 magnetometer (uT), +13..16
orientation (invalid). Missing values are NaN.

Preparation: per file (one session), windows of ``window_s`` seconds every
``hop_s`` (default 5 s, 50 % overlap: InfoMAE's setting, (unconfirmed); FOCAL
uses 2 s / 2 s with interval_fft over 0.4 s intervals, 50 % overlap), kept if
every activity ID in it is equal and non-zero; the 18 IDs are mapped to 0..17
in ascending order; windows with > 10 % NaN are dropped, others linearly
interpolated. Rate 100 Hz (no resampling). Modalities ``<position>_<sensor>``,
sensors acc / gyro / mag, 3 channels each, e.g. ``hand_acc`` [3, 500].
Splits: leave-subjects-out (``_common.subject_splits``; default 2 test and 1 val
subject drawn with ``split_seed``; InfoMAE's exact split is (unconfirmed)).
Extra feature: ``subject`` (101..109).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import ml_collections
import numpy as np

from msjax.data.builders._base import Example, WindowBuilder
from msjax.data.builders._common import (
  map_labels,
  option_splits,
  session_examples,
  window_shape,
)
from msjax.data.loader import loader_options

__all__ = [
  "ACTIVITY_IDS",
  "ACTIVITY_NAMES",
  "Pamap2",
  "default_config",
  "read_dat",
]

RATE_HZ = 100.0
ACTIVITY_IDS = (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 24)
ACTIVITY_NAMES = (
  "lying",
  "sitting",
  "standing",
  "walking",
  "running",
  "cycling",
  "nordic_walking",
  "watching_tv",
  "computer_work",
  "car_driving",
  "ascending_stairs",
  "descending_stairs",
  "vacuum_cleaning",
  "ironing",
  "folding_laundry",
  "house_cleaning",
  "playing_soccer",
  "rope_jumping",
)
_POSITION_COLUMN = {"hand": 3, "chest": 20, "ankle": 37}
_SENSOR_OFFSET = {"acc": 1, "acc6g": 4, "gyro": 7, "mag": 10}
_FILE = re.compile(r"subject(\d+)\.dat$")


def default_config() -> ml_collections.ConfigDict:
  """``config.data`` for PAMAP2 (wrist IMU, 5 s windows, 50 % overlap)."""
  return ml_collections.ConfigDict(
    dict(
      source="pamap2",
      **loader_options(),
      data_dir="~/tensorflow_datasets",
      manual_dir="~/tensorflow_datasets/downloads/manual/pamap2",
      modalities=("hand_acc", "hand_gyro", "hand_mag"),
      positions=("hand",),
      sensors=("acc", "gyro", "mag"),
      folders=("Protocol",),
      window_s=5.0,
      hop_s=2.5,
      representation="time",
      interval_s=0.4,
      interval_hop_s=0.2,
      stft_nfft=64,
      stft_hop=32,
      stft_output="log_magnitude",
      split_seed=0,
      num_val=1,
      num_test=2,
      val_subjects=(),
      test_subjects=(),
    )
  )


def read_dat(path: str) -> np.ndarray:
  """Reads one subject file as float64 ``[T, 54]`` (NaN kept)."""
  data = np.loadtxt(path, dtype=np.float64, ndmin=2)
  if data.shape[1] != 54:
    raise ValueError(
      f"{path}: {data.shape[1]} columns, PAMAP2 files have 54; check the file."
    )
  return data


class Pamap2(WindowBuilder, skip_registration=True):
  """PAMAP2 IMU windows (acc / gyro / mag per body position, 18 classes)."""

  name = "pamap2"
  OBTAIN = (
    "the UCI ML Repository page 'PAMAP2 Physical Activity "
    "Monitoring' (extract PAMAP2_Dataset.zip)"
  )
  EXPECTED = "Protocol/subject1NN.dat"
  EXTRA_FEATURES = ("subject",)

  def _files(self) -> list[tuple[str, int]]:
    found = []
    for folder in self.options["folders"]:
      directory = os.path.join(self.manual_dir, folder)
      if not os.path.isdir(directory):
        continue
      for entry in sorted(os.listdir(directory)):
        match = _FILE.match(entry)
        if match:
          found.append((os.path.join(directory, entry), int(match.group(1))))
    return found

  def modality_shapes(self) -> dict[str, tuple[int, ...]]:
    """3 channels x window samples (or the spectral shape)."""
    shape = window_shape(3, self.options, RATE_HZ)
    return {
      f"{p}_{s}": shape
      for p in self.options["positions"]
      for s in self.options["sensors"]
    }

  def class_names(self) -> list[str]:
    """The 18 activities in ascending ID order."""
    return list(ACTIVITY_NAMES)

  def missing_files(self) -> list[str]:
    """``Protocol/subject1NN.dat`` if no subject file is found."""
    return (
      []
      if self._files()
      else [f"{f}/subject1NN.dat" for f in self.options["folders"]]
    )

  def split_examples(self) -> dict[str, Iterable[Example]]:
    """Leave-subjects-out splits of all windows."""
    files = self._files()
    subjects = sorted({s for _, s in files})
    splits = option_splits(subjects, self.options)
    return {
      name: self._examples(files, members) for name, members in splits.items()
    }

  def _examples(
    self, files: list[tuple[str, int]], members: list[Any]
  ) -> Iterable[Example]:
    mapping = {a: i for i, a in enumerate(ACTIVITY_IDS)}
    for session, (path, subject) in enumerate(files):
      if subject not in members:
        continue
      data = read_dat(path)
      ids = np.nan_to_num(data[:, 1], nan=0).astype(np.int64)
      labels = map_labels(ids, mapping)
      streams = {}
      for position in self.options["positions"]:
        for sensor in self.options["sensors"]:
          first = _POSITION_COLUMN[position] + _SENSOR_OFFSET[sensor]
          streams[f"{position}_{sensor}"] = (
            data[:, first : first + 3].T,
            RATE_HZ,
          )
      yield from session_examples(
        streams,
        labels,
        RATE_HZ,
        window_s=self.options["window_s"],
        hop_s=self.options["hop_s"],
        options=self.options,
        session=session,
        extra={"subject": subject},
      )
