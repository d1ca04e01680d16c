"""MOD vehicle detection, in the raw layout FOCAL / InfoMAE publish.

Obtain: the FOCAL repository README (NeurIPS 2023) links the University of
Illinois Box folder "Vehicle data"; extract so that manual_dir holds the run
folders, e.g. ``Polaris0150pm/rs1/``, ``motor/rs3/``.

Raw format (chosen over FOCAL's torch ``.pt`` samples, so that no torch is
needed): ``<run>/<node>/aud16000.csv`` or ``aud.csv`` (16 kHz audio,
comma-delimited, column 0 used) and ``<run>/<node>/ehz.csv`` (100 Hz seismic,
space-delimited, column 0 used).

Preparation (FOCAL's): each stream trimmed by FOCAL's per-run, per-node trim
table (``TRIM``, seconds at start / end), audio resampled 16 kHz -> 8 kHz
(polyphase), both cut into 2 s non-overlapping windows paired by window index
(``window_s``), each window split into 10 intervals of 0.2 s; by default stored
as FOCAL's spectral input (``representation="interval_fft"``): full complex FFT
per interval, real / imaginary interleaved, in the batch layout ``[C, F, N]``:
``audio [2, 1600, 10]``, ``seismic [2, 20, 10]`` (FOCAL's tensors are the
transpose, ``[2, 10, S]``; ``"time"`` gives ``[1, 16000]`` / ``[1, 200]``).
Label: the first key of ``VEHICLES`` found in the run name. Default runs: the 12
supervised class 0-6 runs (Polaris / Warhog / Silverado from rs1, motor,
mustang0528, walk2, tesla from rs3); ``num_classes=11`` admits classes 7-10.
Splits: FOCAL's random per-window 80 / 20 split (``test_fraction``,
``split_seed``; "val" = "test"), or ``split_by="run"`` holding out
``test_runs``. Extra features: ``domain`` (node index in rs1, rs2, rs3, rs7) and
``run`` (index of the run in ``runs``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import ml_collections
import numpy as np

from msjax.data import signal
from msjax.data.builders._base import Example, WindowBuilder
from msjax.data.builders._common import represent, window_shape
from msjax.data.loader import loader_options

__all__ = [
  "NODES",
  "TRIM",
  "VEHICLES",
  "ModVehicle",
  "default_config",
  "label_of",
  "trim_of",
]

AUDIO_RAW_HZ = 16_000.0
SEISMIC_HZ = 100.0
NODES = ("rs1", "rs2", "rs3", "rs7")
VEHICLES = (
  "Polaris",
  "Warhog",
  "Silverado",
  "motor",
  "tesla",
  "mustang",
  "walk",
  "bicycle",
  "forester",
  "pickup",
  "scooter",
)
CLASS_NAMES = (
  "Polaris",
  "Warhog",
  "Truck",
  "motor",
  "tesla",
  "mustang",
  "walk",
  "bicycle",
  "forester",
  "pickup",
  "scooter",
)
# FOCAL's trim table: run -> (start s per node, end s per node), NODES order.
TRIM = {
  "bicycle": ((0, 0, 0, 0), (0, 0, 0, 0)),
  "bicycle2": ((160, 130, 100, 100), (120, 90, 90, 150)),
  "forester": ((170, 140, 170, 180), (80, 100, 100, 80)),
  "forester2": ((95, 85, 90, 75), (90, 60, 60, 80)),
  "motor": ((160, 160, 160, 160), (100, 80, 65, 90)),
  "motor2": ((240, 225, 240, 240), (100, 80, 90, 70)),
  "mustang": ((380, 360, 370, 350), (30, 40, 30, 30)),
  "mustang2": ((70, 70, 75, 75), (40, 30, 35, 40)),
  "mustang0528": ((300,) * 4, (60,) * 4),
  "pickup": ((330, 290, 260, 290), (130, 110, 70, 30)),
  "pickup2": ((135, 135, 125, 120), (120, 100, 95, 45)),
  "scooter": ((150, 150, 140, 90), (120, 60, 60, 20)),
  "scooter2": ((150, 180, 170, 180), (50, 75, 60, 90)),
  "tesla": ((90, 80, 80, 90), (90, 90, 90, 80)),
  "walk": ((60,) * 4, (60,) * 4),
  "walk2": ((60,) * 4, (60,) * 4),
}
SUPERVISED_RUNS = (
  "Polaris0150pm/rs1",
  "Polaris0215pm/rs1",
  "Polaris0235pm-NoLineOfSight/rs1",
  "Warhog1135am/rs1",
  "Warhog1149am/rs1",
  "Warhog-NoLineOfSight/rs1",
  "Silverado0255pm/rs1",
  "Silverado0315pm/rs1",
  "motor/rs3",
  "mustang0528/rs3",
  "walk2/rs3",
  "tesla/rs3",
)


def default_config() -> ml_collections.ConfigDict:
  """``config.data`` for MOD (FOCAL's 12 supervised runs, 7 classes)."""
  return ml_collections.ConfigDict(
    dict(
      source="mod_vehicle",
      **loader_options(),
      data_dir="~/tensorflow_datasets",
      manual_dir="~/tensorflow_datasets/downloads/manual/mod_vehicle",
      modalities=("seismic", "audio"),
      runs=SUPERVISED_RUNS,
      num_classes=7,
      audio_rate_hz=8000.0,
      trim=True,
      window_s=2.0,
      representation="interval_fft",
      interval_s=0.2,
      interval_hop_s=0.2,
      stft_nfft=256,
      stft_hop=128,
      stft_output="log_magnitude",
      split_by="window",
      test_fraction=0.2,
      split_seed=0,
      test_runs=(),
    )
  )


def label_of(run: str) -> int:
  """FOCAL's vehicle id: the first ``VEHICLES`` key inside the run name."""
  for index, key in enumerate(VEHICLES):
    if key in run:
      return index
  raise ValueError(f"run {run!r} names no known vehicle {VEHICLES}.")


def trim_of(run: str, node: str) -> tuple[float, float]:
  """Seconds FOCAL cuts at the start and end of ``run``/``node`` (default 0)."""
  if run not in TRIM or node not in NODES:
    return 0.0, 0.0
  start, end = TRIM[run]
  index = NODES.index(node)
  return float(start[index]), float(end[index])


def _read_column(path: str, delimiter: str | None) -> np.ndarray:
  """Column 0 of a numeric text file (one header line tolerated)."""
  for skip in (0, 1):
    try:
      return np.loadtxt(
        path,
        delimiter=delimiter,
        usecols=0,
        ndmin=1,
        dtype=np.float64,
        skiprows=skip,
      )
    except ValueError:
      if skip:
        raise
  raise AssertionError("unreachable")


class ModVehicle(WindowBuilder, skip_registration=True):
  """MOD vehicle windows: seismic (100 Hz) and acoustic (8 kHz)."""

  name = "mod_vehicle"
  OBTAIN = (
    "the 'Vehicle data' Box folder linked from the FOCAL repository README"
  )
  EXPECTED = "<run>/<node>/aud16000.csv (or aud.csv) and <run>/<node>/ehz.csv"
  EXTRA_FEATURES = ("domain", "run")

  def _audio_path(self, run_node: str) -> str | None:
    for name in ("aud16000.csv", "aud.csv"):
      path = os.path.join(self.manual_dir, run_node, name)
      if os.path.exists(path):
        return path
    return None

  def _rates(self) -> dict[str, float]:
    return {
      "seismic": SEISMIC_HZ,
      "audio": float(self.options["audio_rate_hz"]),
    }

  def modality_shapes(self) -> dict[str, tuple[int, ...]]:
    """Per modality ``[1, window]`` or its spectral shape."""
    return {
      m: window_shape(1, self.options, r) for m, r in self._rates().items()
    }

  def class_names(self) -> list[str]:
    """Classes 0 .. num_classes - 1 (Silverado is "Truck")."""
    return list(CLASS_NAMES[: int(self.options["num_classes"])])

  def missing_files(self) -> list[str]:
    """Runs lacking audio or seismic files."""
    missing = []
    for run_node in self.options["runs"]:
      if self._audio_path(run_node) is None:
        missing.append(f"{run_node}/aud16000.csv")
      if not os.path.exists(os.path.join(self.manual_dir, run_node, "ehz.csv")):
        missing.append(f"{run_node}/ehz.csv")
    return missing

  def split_examples(self) -> dict[str, Iterable[Example]]:
    """Per-window random (FOCAL) or held-out-run splits."""
    o = self.options
    if o["split_by"] not in ("window", "run"):
      raise ValueError(
        f"split_by={o['split_by']!r} unknown; use window or run."
      )
    return {
      "train": self._examples(False),
      "val": self._examples(True),
      "test": self._examples(True),
    }

  def _held_out(self, run_index: int, run_node: str, window: int) -> bool:
    o = self.options
    if o["split_by"] == "run":
      return run_node in o["test_runs"]
    rng = np.random.default_rng([int(o["split_seed"]), run_index, window])
    return bool(rng.random() < o["test_fraction"])

  def _streams(self, run_node: str) -> dict[str, np.ndarray]:
    """Trimmed, resampled ``[1, T]`` streams of one run (cached per run)."""
    cache = self.__dict__.setdefault("_stream_cache", {})
    if run_node not in cache:
      run, node = run_node.split("/")
      o = self.options
      begin, end = trim_of(run, node) if o["trim"] else (0.0, 0.0)
      audio = _read_column(self._audio_path(run_node), ",")
      seismic = _read_column(
        os.path.join(self.manual_dir, run_node, "ehz.csv"), None
      )
      audio = audio[
        int(begin * AUDIO_RAW_HZ) : len(audio) - int(end * AUDIO_RAW_HZ)
      ]
      seismic = seismic[
        int(begin * SEISMIC_HZ) : len(seismic) - int(end * SEISMIC_HZ)
      ]
      audio = signal.resample(
        audio, rate_in=AUDIO_RAW_HZ, rate_out=self._rates()["audio"]
      )
      cache[run_node] = {"seismic": seismic[None], "audio": audio[None]}
    return cache[run_node]

  def _examples(self, held_out: bool) -> Iterable[Example]:
    o = self.options
    rates = self._rates()
    for index, run_node in enumerate(o["runs"]):
      run, node = run_node.split("/")
      label = label_of(run)
      if label >= int(o["num_classes"]):
        raise ValueError(
          f"run {run!r} is class {label} >= num_classes={o['num_classes']}; "
          "raise num_classes or drop the run."
        )
      streams = self._streams(run_node)
      sizes = {m: int(round(o["window_s"] * r)) for m, r in rates.items()}
      count = min(streams[m].shape[-1] // sizes[m] for m in streams)
      for k in range(count):
        if self._held_out(index, run_node, k) != held_out:
          continue
        signals = {
          m: represent(s[:, k * sizes[m] : (k + 1) * sizes[m]], o, rates[m])
          for m, s in streams.items()
        }
        yield {
          "signals": signals,
          "label": label,
          "session": index,
          "time_index": k,
          "domain": NODES.index(node) if node in NODES else len(NODES),
          "run": index,
        }
