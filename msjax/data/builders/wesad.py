"""WESAD wearable stress and affect detection (Schmidt et al., ICMI 2018).

Obtain: the University of Siegen ubiquitous-computing group's WESAD page
(``WESAD.zip``, also listed on UCI); extract so that manual_dir holds
``WESAD/S2/S2.pkl ... WESAD/S17/S17.pkl`` (or ``S2/S2.pkl ...`` directly).

Raw format: one pickled dict per subject (written by Python 2, loaded with
``encoding="latin1"``; only open files you downloaded yourself): ``"subject"``,
``"label"`` (``int [N]`` at 700 Hz: 0 transient, 1 baseline, 2 stress, 3
amusement, 4 meditation, 5-7 ignore) and ``"signal"`` with ``"wrist"`` (E4:
``ACC [L, 3]`` 32 Hz, ``BVP [L, 1]`` 64 Hz, ``EDA``, ``TEMP [L, 1]`` 4 Hz) and
``"chest"`` (RespiBAN, 700 Hz: ``ACC [N, 3]``, ``ECG``, ``EMG``, ``EDA``,
``Temp``, ``Resp [N, 1]``). All streams start at the same instant.

Preparation: wrist BVP (64 Hz) and ACC (32 Hz) by default (``wrist_signals``;
chest signals with ``chest_signals``, e.g. ("ECG", "Resp")); modality names
``wrist_bvp``, ``wrist_acc``, ``chest_ecg``, ... Optional polyphase resampling
of every stream to ``resample_hz`` (0 = native rates; Pulse-PPG uses 50 Hz).
Windows of ``window_s`` every ``hop_s`` (default 60 s, no overlap: the same
authors' Pulse-PPG WESAD setting; ProtoMM's exact windowing is (unconfirmed)),
kept only inside one label run; ``align="run"`` starts the windows at the
beginning of each contiguous run of one kept label (as Pulse-PPG), ``"grid"`` on
a grid from the session start. Tasks: "3class" (baseline 0, stress 1, amusement
2), "binary" (baseline and amusement 0, stress 1), "4class" (+ meditation 3).
Splits: leave-subjects-out, default 2 test and 2 val of the 15 subjects with
``split_seed=1234`` (Pulse-PPG: 11 / 2 / 2). Extra feature: ``subject`` (2..17).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from typing import Any

import ml_collections
import numpy as np

from msjax.data import signal
from msjax.data.builders._base import Example, WindowBuilder
from msjax.data.builders._common import (
  map_labels,
  option_splits,
  session_examples,
  window_shape,
)
from msjax.data.loader import loader_options

__all__ = ["TASKS", "Wesad", "default_config", "read_subject"]

LABEL_RATE_HZ = 700.0
WRIST_RATES = {"ACC": 32.0, "BVP": 64.0, "EDA": 4.0, "TEMP": 4.0}
CHEST_SIGNALS = ("ACC", "ECG", "EMG", "EDA", "Temp", "Resp")
TASKS = {
  "3class": ({1: 0, 2: 1, 3: 2}, ["baseline", "stress", "amusement"]),
  "binary": ({1: 0, 3: 0, 2: 1}, ["non_stress", "stress"]),
  "4class": (
    {1: 0, 2: 1, 3: 2, 4: 3},
    ["baseline", "stress", "amusement", "meditation"],
  ),
}
SUBJECTS = tuple(f"S{i}" for i in (*range(2, 12), *range(13, 18)))


def default_config() -> ml_collections.ConfigDict:
  """``config.data`` for WESAD (wrist BVP + ACC, 60 s windows, 3 classes)."""
  return ml_collections.ConfigDict(
    dict(
      source="wesad",
      **loader_options(),
      data_dir="~/tensorflow_datasets",
      manual_dir="~/tensorflow_datasets/downloads/manual/wesad",
      modalities=("wrist_bvp", "wrist_acc"),
      wrist_signals=("BVP", "ACC"),
      chest_signals=(),
      resample_hz=0.0,
      window_s=60.0,
      hop_s=60.0,
      align="run",
      task="3class",
      representation="time",
      interval_s=1.0,
      interval_hop_s=1.0,
      stft_nfft=64,
      stft_hop=32,
      stft_output="log_magnitude",
      split_seed=1234,
      num_val=2,
      num_test=2,
      val_subjects=(),
      test_subjects=(),
    )
  )


def read_subject(path: str) -> dict[str, Any]:
  """Loads one ``SX.pkl`` (Python-2 pickle, hence latin1)."""
  with open(path, "rb") as f:
    return pickle.load(f, encoding="latin1")


class Wesad(WindowBuilder, skip_registration=True):
  """WESAD windows (wrist BVP / ACC, optional chest), 2-4 classes."""

  name = "wesad"
  OBTAIN = (
    "the University of Siegen WESAD page (WESAD.zip; also on the UCI "
    "ML Repository)"
  )
  EXPECTED = "WESAD/SX/SX.pkl for X in 2..11, 13..17"
  EXTRA_FEATURES = ("subject",)

  def _paths(self) -> dict[str, str]:
    found = {}
    for subject in SUBJECTS:
      for root in (os.path.join(self.manual_dir, "WESAD"), self.manual_dir):
        path = os.path.join(root, subject, f"{subject}.pkl")
        if os.path.exists(path):
          found[subject] = path
          break
    return found

  def _rates(self) -> dict[str, tuple[str, str, float]]:
    """Modality -> (device, key, rate at the output)."""
    o = self.options
    out = {}
    for key in o["wrist_signals"]:
      out[f"wrist_{key.lower()}"] = ("wrist", key, WRIST_RATES[key])
    for key in o["chest_signals"]:
      if key not in CHEST_SIGNALS:
        raise ValueError(
          f"chest signal {key!r} unknown; use some of {CHEST_SIGNALS}."
        )
      out[f"chest_{key.lower()}"] = ("chest", key, LABEL_RATE_HZ)
    if o["resample_hz"]:
      out = {m: (d, k, float(o["resample_hz"])) for m, (d, k, _) in out.items()}
    return out

  def modality_shapes(self) -> dict[str, tuple[int, ...]]:
    """``[C, window_s * rate]`` per modality (or its spectral shape)."""
    return {
      m: window_shape(3 if key == "ACC" else 1, self.options, rate)
      for m, (_, key, rate) in self._rates().items()
    }

  def class_names(self) -> list[str]:
    """Class names of the chosen task."""
    task = self.options["task"]
    if task not in TASKS:
      raise ValueError(f"task={task!r} unknown; use one of {sorted(TASKS)}.")
    return TASKS[task][1]

  def missing_files(self) -> list[str]:
    """Subject pickles not found (all 15 are optional but one is needed)."""
    return [] if self._paths() else [f"WESAD/{s}/{s}.pkl" for s in SUBJECTS]

  def split_examples(self) -> dict[str, Iterable[Example]]:
    """Leave-subjects-out splits."""
    paths = self._paths()
    splits = option_splits(list(paths), self.options)
    return {
      name: self._examples(paths, members) for name, members in splits.items()
    }

  def _examples(
    self, paths: dict[str, str], members: list[str]
  ) -> Iterable[Example]:
    mapping = TASKS[self.options["task"]][0]
    for session, subject in enumerate(sorted(paths, key=str)):
      if subject not in members:
        continue
      record = read_subject(paths[subject])
      raw = np.asarray(record["label"]).astype(np.int64).reshape(-1)
      labels = map_labels(raw, mapping)
      streams = {}
      for m, (device, key, rate) in self._rates().items():
        data = np.asarray(record["signal"][device][key], np.float64)
        data = data.reshape(len(data), -1).T  # [C, T]
        native = WRIST_RATES[key] if device == "wrist" else LABEL_RATE_HZ
        streams[m] = (
          signal.resample(data, rate_in=native, rate_out=rate),
          rate,
        )
      extra = {"subject": int(subject[1:])}
      yield from self._session(streams, labels, session, extra)

  def _session(
    self,
    streams: dict[str, tuple[np.ndarray, float]],
    labels: np.ndarray,
    session: int,
    extra: dict[str, int],
  ) -> Iterable[Example]:
    o = self.options
    kwargs = dict(
      window_s=o["window_s"],
      hop_s=o["hop_s"],
      options=o,
      session=session,
      extra=extra,
    )
    if o["align"] == "grid":
      yield from session_examples(streams, labels, LABEL_RATE_HZ, **kwargs)
      return
    if o["align"] != "run":
      raise ValueError(f"align={o['align']!r} unknown; use run or grid.")
    edges = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.r_[0, edges, len(labels)]
    offset = 0
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
      if labels[begin] < 0:
        continue
      start_s = begin / LABEL_RATE_HZ
      cut = {
        m: (s[:, int(round(start_s * r)) :], r) for m, (s, r) in streams.items()
      }
      for example in session_examples(
        cut, labels[begin:end], LABEL_RATE_HZ, **kwargs
      ):
        example["time_index"] += offset
        yield example
      # Leave a gap of one index between runs: they are not consecutive.
      offset += int((end - begin) / LABEL_RATE_HZ // o["hop_s"]) + 1
