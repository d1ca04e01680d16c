"""Aligning streams to windows: per-window labels, uniform-grid interpolation.

* ``window_labels``: one label per window from a per-sample label stream.
* ``interpolate_uniform``: irregularly timestamped samples onto a uniform grid.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from msjax.data.signal import sliding_windows

__all__ = ["window_labels", "interpolate_uniform"]


def window_labels(
  labels: np.ndarray,
  *,
  window: int,
  hop: int,
  rule: Literal["unanimous", "majority", "center"] = "unanimous",
  invalid: int = -1,
) -> np.ndarray:
  """One label per window of a per-sample integer label stream.

  Args:
    labels: ``int [T]``.
    window: window length in samples.
    hop: window step in samples.
    rule: "unanimous" (all samples equal, else ``invalid``), "majority" (most
      frequent value, ties to the smallest) or "center" (the middle sample).
    invalid: value for windows that fail the unanimous rule.

  Returns:
    ``int64 [N]``, N = ``num_windows(T, window=, hop=)``.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D [T], got shape {labels.shape}.")
  wins = sliding_windows(labels.astype(np.int64), window=window, hop=hop)
  if rule == "center":
    return wins[:, window // 2]
  if rule == "unanimous":
    same = np.all(wins == wins[:, :1], axis=1)
    return np.where(same, wins[:, 0], invalid).astype(np.int64)
  if rule == "majority":
    out = np.empty(len(wins), dtype=np.int64)
    for i, row in enumerate(wins):
      values, counts = np.unique(row, return_counts=True)
      out[i] = values[np.argmax(counts)]
    return out
  raise ValueError(
    f"window_labels rule {rule!r} unknown; use unanimous, majority or center."
  )


def interpolate_uniform(
  times: np.ndarray, values: np.ndarray, grid: np.ndarray
) -> np.ndarray:
  """Linear interpolation of timestamped samples onto a grid.

  Args:
    times: ``[T]`` strictly increasing sample times (any unit).
    values: ``[T, C]`` (or ``[T]``) samples.
    grid: ``[G]`` output times in the same unit, inside ``[times[0],
      times[-1]]``.

  Returns:
    float64 ``[C, G]`` (channels first; ``[1, G]`` for 1-D values).
  """
  times = np.asarray(times, dtype=np.float64)
  values = np.asarray(values, dtype=np.float64)
  if values.ndim == 1:
    values = values[:, None]
  if times.ndim != 1 or len(times) != len(values):
    raise ValueError(
      f"times {times.shape} and values {values.shape} must share length T."
    )
  if len(times) > 1 and np.any(np.diff(times) <= 0):
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    keep = np.concatenate([[True], np.diff(times) > 0])
    times, values = times[keep], values[keep]
  return np.stack(
    [np.interp(grid, times, values[:, c]) for c in range(values.shape[1])]
  )
