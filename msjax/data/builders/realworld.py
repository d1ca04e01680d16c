"""RealWorld HAR (Sztyler & Stuckenschmidt, PerCom 2016).

Obtain: the University of Mannheim Data and Web Science group's "RealWorld
(HAR)" page; extract so that manual_dir holds ``proband1 ... proband15`` (or
``realworld2016_dataset/probandN``), each with ``data/<s>_<activity>_csv.zip``,
``<s>`` in acc, gyr, mag, lig.

Raw format: each zip holds one CSV per body position,
``<Name>_<activity>[_<k>]_<position>.csv`` (``<Name>`` = acc, Gyroscope,
MagneticField, Light), header ``id,attr_time,attr_x,attr_y,attr_z`` (light:
one value column), ``attr_time`` in Unix milliseconds, nominal 50 Hz with
irregular stamps. Zips may nest further zips (split recordings, ``_2``/``_3``
infixes); both are read.

Preparation: one session per (subject, activity, part); all selected streams
are linearly interpolated onto a common 20 ms grid over their overlapping
span (a session lacking a selected stream is skipped, as readers do);
windows of ``window_s`` every ``hop_s`` (default 2 s, 50 % overlap: InfoMAE's
setting, (unconfirmed); FOCAL: 5 s segments). Activities (8, in this order):
climbingdown, climbingup, jumping, lying, running, sitting, standing,
walking. Positions: chest, forearm, head, shin, thigh, upperarm, waist.
Modalities ``<position>_<sensor>``, sensors acc / gyro / mag (3 channels) and
light (1), e.g. ``waist_acc`` [3, 100]. Splits: leave-subjects-out (default 3
test, 2 val subjects with ``split_seed``). Extra feature: ``subject`` (1..15).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

import ml_collections
import numpy as np

from msjax.data import alignment
from msjax.data.builders._base import Example, WindowBuilder
from msjax.data.builders._common import (
  option_splits,
  session_examples,
  window_shape,
)
from msjax.data.loader import loader_options

__all__ = [
  "ACTIVITIES",
  "POSITIONS",
  "RealWorldHar",
  "default_config",
  "read_zip",
]

RATE_HZ = 50.0
ACTIVITIES = (
  "climbingdown",
  "climbingup",
  "jumping",
  "lying",
  "running",
  "sitting",
  "standing",
  "walking",
)
POSITIONS = ("chest", "forearm", "head", "shin", "thigh", "upperarm", "waist")
SENSORS = {  # msjax name -> (zip prefix, csv name, channels)
  "acc": ("acc", "acc", 3),
  "gyro": ("gyr", "Gyroscope", 3),
  "mag": ("mag", "MagneticField", 3),
  "light": ("lig", "Light", 1),
}
_CSV = re.compile(
  r"(?:.*/)?(acc|Gyroscope|MagneticField|Light)_([a-z]+)(?:_(\d+))?_"
  r"([a-z]+)\.csv$"
)
_SUBJECT = re.compile(r"proband(\d+)$")


def default_config() -> ml_collections.ConfigDict:
  """``config.data`` for RealWorld HAR (waist, 2 s windows, 50 % overlap)."""
  return ml_collections.ConfigDict(
    dict(
      source="realworld_har",
      **loader_options(),
      data_dir="~/tensorflow_datasets",
      manual_dir="~/tensorflow_datasets/downloads/manual/realworld_har",
      modalities=("waist_acc", "waist_gyro", "waist_mag", "waist_light"),
      positions=("waist",),
      sensors=("acc", "gyro", "mag", "light"),
      window_s=2.0,
      hop_s=1.0,
      representation="time",
      interval_s=0.4,
      interval_hop_s=0.2,
      stft_nfft=32,
      stft_hop=16,
      stft_output="log_magnitude",
      split_seed=0,
      num_val=2,
      num_test=3,
      val_subjects=(),
      test_subjects=(),
    )
  )


def read_zip(data: bytes | str) -> Iterator[tuple[str, int, str, np.ndarray]]:
  """Yields ``(csv name, part, position, [T, 1 + C] array)`` from a zip.

  Nested zips are read recursively; the array holds ``attr_time`` (ms) then
  the value columns.
  """
  source = io.BytesIO(data) if isinstance(data, bytes) else data
  with zipfile.ZipFile(source) as archive:
    for member in sorted(archive.namelist()):
      if member.endswith(".zip"):
        yield from read_zip(archive.read(member))
        continue
      match = _CSV.match(member)
      if not match:
        continue
      text = archive.read(member).decode("utf-8")
      table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2)
      part = int(match.group(3) or 1)
      yield match.group(1), part, match.group(4), table[:, 1:]


class RealWorldHar(WindowBuilder, skip_registration=True):
  """RealWorld HAR windows (acc / gyro / mag / light per position)."""

  name = "realworld_har"
  OBTAIN = (
    "the University of Mannheim DWS group's 'RealWorld (HAR)' dataset page"
  )
  EXPECTED = "probandN/data/<acc|gyr|mag|lig>_<activity>_csv.zip"
  EXTRA_FEATURES = ("subject",)

  def _subjects(self) -> dict[int, str]:
    found = {}
    for root in (
      os.path.join(self.manual_dir, "realworld2016_dataset"),
      self.manual_dir,
    ):
      if not os.path.isdir(root):
        continue
      for entry in os.listdir(root):
        match = _SUBJECT.match(entry)
        if match and os.path.isdir(os.path.join(root, entry, "data")):
          found.setdefault(
            int(match.group(1)), os.path.join(root, entry, "data")
          )
    return found

  def _modalities(self) -> dict[str, tuple[str, str]]:
    out = {}
    for position in self.options["positions"]:
      if position not in POSITIONS:
        raise ValueError(f"position {position!r} unknown; use {POSITIONS}.")
      for sensor in self.options["sensors"]:
        if sensor not in SENSORS:
          raise ValueError(f"sensor {sensor!r} unknown; use {list(SENSORS)}.")
        out[f"{position}_{sensor}"] = (position, sensor)
    return out

  def modality_shapes(self) -> dict[str, tuple[int, ...]]:
    """``[C, window_s * 50]`` per modality (or its spectral shape)."""
    return {
      m: window_shape(SENSORS[s][2], self.options, RATE_HZ)
      for m, (_, s) in self._modalities().items()
    }

  def class_names(self) -> list[str]:
    """The 8 activities."""
    return list(ACTIVITIES)

  def missing_files(self) -> list[str]:
    """``probandN/data`` folders, if none is found."""
    return [] if self._subjects() else ["probandN/data"]

  def split_examples(self) -> dict[str, Iterable[Example]]:
    """Leave-subjects-out splits."""
    subjects = self._subjects()
    splits = option_splits(list(subjects), self.options)
    return {
      name: self._examples(subjects, members)
      for name, members in splits.items()
    }

  def _session_streams(
    self, folder: str, activity: str
  ) -> dict[int, dict[str, np.ndarray]]:
    """Part -> modality -> ``[T, 1 + C]`` timestamped table."""
    wanted = {(p, SENSORS[s][1]): m for m, (p, s) in self._modalities().items()}
    parts: dict[int, dict[str, np.ndarray]] = {}
    for prefix in sorted(
      {SENSORS[s][0] for _, s in self._modalities().values()}
    ):
      path = os.path.join(folder, f"{prefix}_{activity}_csv.zip")
      if not os.path.exists(path):
        continue
      for name, part, position, table in read_zip(path):
        modality = wanted.get((position, name))
        if modality is not None and len(table) > 1:
          parts.setdefault(part, {})[modality] = table
    return parts

  def _examples(
    self, subjects: dict[int, str], members: list[Any]
  ) -> Iterable[Example]:
    modalities = list(self._modalities())
    session = -1
    for subject in sorted(subjects):
      for label, activity in enumerate(ACTIVITIES):
        parts = self._session_streams(subjects[subject], activity)
        for part in sorted(parts):
          session += 1
          tables = parts[part]
          if subject not in members or set(tables) != set(modalities):
            continue
          begin = max(t[0, 0] for t in tables.values())
          end = min(t[-1, 0] for t in tables.values())
          grid = np.arange(begin, end, 1000.0 / RATE_HZ)
          if len(grid) < 2:
            continue
          streams = {
            m: (
              alignment.interpolate_uniform(
                tables[m][:, 0], tables[m][:, 1:], grid
              ),
              RATE_HZ,
            )
            for m in modalities
          }
          yield from session_examples(
            streams,
            np.full(len(grid), label),
            RATE_HZ,
            window_s=self.options["window_s"],
            hop_s=self.options["hop_s"],
            options=self.options,
            session=session,
            extra={"subject": subject},
          )
