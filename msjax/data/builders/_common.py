"""Pure helpers shared by the builders: splits, windows, representations.

Representation options (keys of every builder's ``default_config()``):

* ``representation="time"``: windows ``[C, T]`` as cut.
* ``"interval_fft"``: FOCAL/InfoMAE's input: each window split into intervals
  of ``interval_s`` seconds every ``interval_hop_s``, full complex FFT per
  interval, real/imag interleaved (``signal.interval_fft``), stored in the
  batch layout ``[C, F, N]`` of docs/architecture.md: ``[2C, S, I]`` (S
  frequency bins of one interval, I intervals as time frames; FOCAL's own
  tensors are ``[2C, I, S]``).
* ``"stft"``: ``signal.stft`` with ``stft_nfft``, ``stft_hop`` (samples) and
  ``stft_output`` ("log_magnitude", "magnitude", "real_imag"): ``[C', F, N]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from msjax.data import alignment, signal

__all__ = [
  "REPRESENTATION_KEYS",
  "represent",
  "window_shape",
  "subject_splits",
  "option_splits",
  "map_labels",
  "fill_nan",
  "session_examples",
]

REPRESENTATION_KEYS = (
  "representation",
  "interval_s",
  "interval_hop_s",
  "stft_nfft",
  "stft_hop",
  "stft_output",
)


def represent(
  window: np.ndarray, options: Mapping[str, Any], rate_hz: float
) -> np.ndarray:
  """Turns one ``[C, T]`` window into the configured representation."""
  kind = options["representation"]
  if kind == "time":
    return np.asarray(window, np.float32)
  if kind == "interval_fft":
    interval = int(round(options["interval_s"] * rate_hz))
    hop = int(round(options["interval_hop_s"] * rate_hz))
    parts = signal.split_intervals(window, interval=interval, hop=hop)
    return np.swapaxes(signal.interval_fft(parts), -1, -2)
  if kind == "stft":
    return signal.stft(
      window,
      nfft=int(options["stft_nfft"]),
      hop=int(options["stft_hop"]),
      output=options["stft_output"],
    )
  raise ValueError(
    f"representation={kind!r} unknown; use time, interval_fft or stft."
  )


def window_shape(
  channels: int, options: Mapping[str, Any], rate_hz: float
) -> tuple[int, ...]:
  """Shape of one ``[channels, window_s * rate_hz]`` window once represented."""
  window = int(round(options["window_s"] * rate_hz))
  return represent(np.zeros((channels, window)), options, rate_hz).shape


def subject_splits(
  subjects: Sequence[Any],
  *,
  seed: int,
  num_val: int,
  num_test: int,
  val_subjects: Sequence[Any] = (),
  test_subjects: Sequence[Any] = (),
) -> dict[str, list[Any]]:
  """Leave-subjects-out split.

  Explicit ``val_subjects`` / ``test_subjects`` win; otherwise the subjects,
  sorted as strings, are permuted with ``default_rng(seed)``: the first
  ``num_test`` are test, the next ``num_val`` val, the rest train. With
  ``num_val=0`` the "val" split equals "test" (as in FOCAL).

  Returns:
    {"train": [...], "val": [...], "test": [...]} subject lists.
  """
  ordered = sorted(subjects, key=str)
  if test_subjects or val_subjects:
    test = [s for s in ordered if s in set(test_subjects)]
    val = [s for s in ordered if s in set(val_subjects)]
  else:
    if num_test + num_val >= len(ordered):
      raise ValueError(
        f"{len(ordered)} subjects cannot give {num_test} test + {num_val} val"
        " and a train split; lower num_test/num_val."
      )
    perm = [
      ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))
    ]
    test, val = perm[:num_test], perm[num_test : num_test + num_val]
  held = set(test) | set(val)
  train = [s for s in ordered if s not in held]
  return {
    "train": train,
    "val": sorted(val or test, key=str),
    "test": sorted(test, key=str),
  }


def option_splits(
  subjects: Sequence[Any], options: Mapping[str, Any]
) -> dict[str, list[Any]]:
  """``subject_splits`` with the builder options' split keys.

  Args:
    subjects: All subjects found.
    options: Builder options with ``split_seed``, ``num_val``, ``num_test``,
      ``val_subjects`` and ``test_subjects``.

  Returns:
    {"train": [...], "val": [...], "test": [...]} subject lists.
  """
  return subject_splits(
    subjects,
    seed=options["split_seed"],
    num_val=options["num_val"],
    num_test=options["num_test"],
    val_subjects=options["val_subjects"],
    test_subjects=options["test_subjects"],
  )


def map_labels(raw: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
  """Maps raw integer labels to class indices, -1 where ``mapping`` has none.

  Args:
    raw: Integer labels of any shape.
    mapping: Raw label -> class index (non-negative raw labels).

  Returns:
    ``int64`` class indices, shaped like ``raw``; -1 for unmapped labels.
  """
  lookup = np.full(max(mapping) + 1, -1, np.int64)
  lookup[list(mapping)] = list(mapping.values())
  raw = np.asarray(raw, np.int64)
  return np.where(
    (raw >= 0) & (raw < len(lookup)),
    lookup[np.clip(raw, 0, len(lookup) - 1)],
    -1,
  )


def fill_nan(x: np.ndarray) -> np.ndarray:
  """Linearly interpolates NaNs along the last axis (edges held, all-NaN 0)."""
  x = np.array(x, dtype=np.float64)
  flat = x.reshape(-1, x.shape[-1])
  grid = np.arange(x.shape[-1])
  for row in flat:
    bad = np.isnan(row)
    if bad.all():
      row[:] = 0.0
    elif bad.any():
      row[bad] = np.interp(grid[bad], grid[~bad], row[~bad])
  return flat.reshape(x.shape)


def _samples(seconds: float, rate_hz: float, what: str) -> int:
  count = seconds * rate_hz
  if abs(count - round(count)) > 1e-6 or round(count) < 1:
    raise ValueError(
      f"{what}={seconds} s is not a whole number of samples at {rate_hz} Hz;"
      " pick a length that is."
    )
  return int(round(count))


def session_examples(
  streams: Mapping[str, tuple[np.ndarray, float]],
  labels: np.ndarray,
  label_rate_hz: float,
  *,
  window_s: float,
  hop_s: float,
  options: Mapping[str, Any],
  session: int,
  extra: Mapping[str, int] | None = None,
  max_nan_fraction: float = 0.1,
) -> Iterable[dict[str, Any]]:
  """Windows of one session whose label is unanimous and kept.

  Window k covers seconds ``[k * hop_s, k * hop_s + window_s)`` of every
  stream (streams may have different rates; all start at time 0).

  Args:
    streams: modality -> (``[C, T_m]`` array, rate in Hz).
    labels: ``int [T_l]`` per-sample class index at ``label_rate_hz``, -1 =
      drop.
    label_rate_hz: rate of ``labels``.
    window_s: window length in seconds (whole samples at every rate).
    hop_s: hop in seconds (whole label samples).
    options: representation options (see module docstring).
    session: session id stored with each window.
    extra: extra int features (e.g. {"subject": 3}).
    max_nan_fraction: windows with more NaN than this are dropped, others are
      interpolated.

  Yields:
    Examples ``{"signals", "label", "session", "time_index", **extra}`` with
    ``time_index = k``; windows are whole inside every stream.
  """
  label_window = _samples(window_s, label_rate_hz, "window_s")
  label_hop = _samples(hop_s, label_rate_hz, "hop_s")
  duration = min(
    [len(labels) / label_rate_hz]
    + [s.shape[-1] / r for s, r in streams.values()]
  )
  usable = int(np.floor(duration * label_rate_hz + 1e-9))
  per_window = alignment.window_labels(
    labels[:usable], window=label_window, hop=label_hop
  )
  sizes = {
    m: _samples(window_s, r, "window_s") for m, (_, r) in streams.items()
  }
  for index, label in enumerate(per_window):
    if label < 0:
      continue
    signals = {}
    for name, (stream, rate) in streams.items():
      begin = int(round(index * hop_s * rate))
      cut = stream[:, begin : begin + sizes[name]]
      if (
        cut.shape[-1] < sizes[name] or np.mean(np.isnan(cut)) > max_nan_fraction
      ):
        break
      signals[name] = represent(fill_nan(cut), options, rate)
    else:
      yield {
        "signals": signals,
        "label": int(label),
        "session": session,
        "time_index": index,
        **(extra or {}),
      }
