"""Signal processing used once, at data preparation time (numpy, no JAX).

Conventions: the time axis is the last axis; channels come before it
(``[C, T]``, or any leading axes ``[..., T]``). Every function is pure and
deterministic.

* ``sliding_windows``: windows of ``window`` samples every ``hop`` samples,
  stacked on a new leading axis ``[N, ..., window]`` (N = number of windows).
* ``resample``: rate conversion. ``method="polyphase"`` (default) is
  ``scipy.signal.resample_poly`` with the reduced ratio ``up/down`` of the two
  rates (a Kaiser-windowed FIR anti-aliasing filter, zero phase; good for
  long streams and rational ratios such as 64 -> 50 Hz or 16 kHz -> 8 kHz).
  ``method="fft"`` is band-limited Fourier resampling
  (``scipy.signal.resample``;
  exact for periodic band-limited input, best on short windows). Output length
  is ``round(T * rate_out / rate_in)`` for both.
* ``split_intervals``: FOCAL's interval split ``[..., T] -> [..., I, S]``.
* ``interval_fft``: FOCAL/InfoMAE's spectral input: the full complex FFT of each
  interval (rectangular window, window = hop = one interval, no padding), real
  and imaginary parts interleaved as channels, `[..., C, I, S] -> [..., 2C, I,
  S]` ordered (c0 real, c0 imag, c1 real, ...).
* ``stft``: short-time Fourier transform ``[..., C, T] -> [..., C', F, N]``
  (F = nfft // 2 + 1 one-sided bins, N frames) as ``"complex"``, ``"real_imag"``
  (interleaved, C' = 2C), ``"magnitude"`` or ``"log_magnitude"`` (C' = C).

Label windowing and irregular-timestamp interpolation are in
``msjax.data.alignment``.
"""

from __future__ import annotations

import fractions
from typing import Literal

import numpy as np

__all__ = [
  "num_windows",
  "window_starts",
  "sliding_windows",
  "resample",
  "split_intervals",
  "interval_fft",
  "stft",
]

StftOutput = Literal["complex", "real_imag", "magnitude", "log_magnitude"]


def _check_window(window: int, hop: int) -> None:
  if window < 1:
    raise ValueError(f"window={window} must be a positive sample count.")
  if hop < 1:
    raise ValueError(f"hop={hop} must be a positive sample count.")


def num_windows(length: int, *, window: int, hop: int) -> int:
  """Number of full windows of ``window`` samples every ``hop`` in ``length``.

  Args:
    length: number of samples in the stream.
    window: window length in samples.
    hop: step between window starts in samples.

  Returns:
    ``max(0, (length - window) // hop + 1)``; a partial last window is dropped.
  """
  _check_window(window, hop)
  if length < window:
    return 0
  return (length - window) // hop + 1


def window_starts(length: int, *, window: int, hop: int) -> np.ndarray:
  """Start sample of every full window, ``int64 [N]``."""
  count = num_windows(length, window=window, hop=hop)
  return np.arange(count, dtype=np.int64) * hop


def sliding_windows(x: np.ndarray, *, window: int, hop: int) -> np.ndarray:
  """Cuts the last axis into full windows.

  Args:
    x: ``[..., T]`` array.
    window: window length in samples.
    hop: step between window starts (window // 2 = 50 % overlap).

  Returns:
    ``[N, ..., window]`` (a copy), N = ``num_windows(T, window=, hop=)``.

  Example:
    >>> sliding_windows(np.arange(6), window=4, hop=2)
    array([[0, 1, 2, 3],
           [2, 3, 4, 5]])
  """
  x = np.asarray(x)
  if x.ndim < 1:
    raise ValueError("sliding_windows needs an array with a time axis.")
  starts = window_starts(x.shape[-1], window=window, hop=hop)
  if starts.size == 0:
    return np.zeros((0, *x.shape[:-1], window), dtype=x.dtype)
  view = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)
  picked = view[..., starts, :]  # [..., N, window]
  return np.ascontiguousarray(np.moveaxis(picked, -2, 0))


def resample(
  x: np.ndarray,
  *,
  rate_in: float,
  rate_out: float,
  method: Literal["polyphase", "fft"] = "polyphase",
) -> np.ndarray:
  """Resamples the last axis from ``rate_in`` Hz to ``rate_out`` Hz.

  Args:
    x: ``[..., T]`` float array.
    rate_in: input sample rate in Hz (> 0).
    rate_out: output sample rate in Hz (> 0).
    method: ``"polyphase"`` (FIR, ``scipy.signal.resample_poly``) or ``"fft"``
      (Fourier, ``scipy.signal.resample``); see the module docstring.

  Returns:
    ``[..., round(T * rate_out / rate_in)]`` float array (float32 input stays
    float32).
  """
  if rate_in <= 0 or rate_out <= 0:
    raise ValueError(
      f"resample rates must be positive Hz, got {rate_in} -> {rate_out}."
    )
  x = np.asarray(x)
  if not np.issubdtype(x.dtype, np.floating):
    x = x.astype(np.float64)
  if rate_in == rate_out:
    return x.copy()
  length = x.shape[-1]
  out_len = int(round(length * rate_out / rate_in))
  import scipy.signal  # noqa: PLC0415 (lazy: keeps ``import msjax.data`` fast)

  if method == "fft":
    y = scipy.signal.resample(x, out_len, axis=-1)
  elif method == "polyphase":
    ratio = fractions.Fraction(rate_out / rate_in).limit_denominator(10_000)
    y = scipy.signal.resample_poly(
      x, ratio.numerator, ratio.denominator, axis=-1
    )
    if y.shape[-1] < out_len:
      pad = [(0, 0)] * (y.ndim - 1) + [(0, out_len - y.shape[-1])]
      y = np.pad(y, pad, mode="edge")
    y = y[..., :out_len]
  else:
    raise ValueError(
      f"resample method {method!r} unknown; use 'polyphase' or 'fft'."
    )
  return y.astype(x.dtype, copy=False)


def split_intervals(x: np.ndarray, *, interval: int, hop: int) -> np.ndarray:
  """Splits the last axis into (possibly overlapping) intervals.

  FOCAL's layout: MOD 2 s windows -> 10 intervals of 0.2 s (hop = interval);
  PAMAP2 200 samples -> 9 intervals of 40 with 50 % overlap (hop 20).

  Args:
    x: ``[..., T]`` array.
    interval: interval length S in samples.
    hop: step between interval starts.

  Returns:
    ``[..., I, S]``, I = ``num_windows(T, window=interval, hop=hop)``.
  """
  out = sliding_windows(x, window=interval, hop=hop)  # [I, ..., S]
  if out.shape[0] == 0:
    raise ValueError(
      f"signal of {np.shape(x)[-1]} samples is shorter than one interval "
      f"({interval}); use a shorter interval."
    )
  return np.ascontiguousarray(np.moveaxis(out, 0, -2))


def interval_fft(x: np.ndarray) -> np.ndarray:
  """FOCAL's per-interval spectrum with real/imag interleaved channels.

  Args:
    x: ``[..., C, I, S]`` real array (C channels, I intervals of S samples).

  Returns:
    float32 ``[..., 2C, I, S]``: channel ``2c`` = Re FFT(x[c]), ``2c + 1`` = Im,
    full (two-sided) FFT along S, rectangular window, no padding.
  """
  x = np.asarray(x)
  if x.ndim < 3:
    raise ValueError(
      f"interval_fft needs [..., C, I, S], got shape {x.shape}; call "
      "split_intervals first."
    )
  spec = np.fft.fft(x.astype(np.float64), axis=-1)
  parts = np.stack([spec.real, spec.imag], axis=-3)  # [..., C, 2, I, S]
  shape = (*x.shape[:-3], 2 * x.shape[-3], *x.shape[-2:])
  return parts.reshape(shape).astype(np.float32)


def _taper(window: str, length: int) -> np.ndarray:
  """Periodic window of ``length`` samples (numpy for hann / boxcar)."""
  if window == "hann":
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
  if window in ("boxcar", "rect", "rectangular"):
    return np.ones(length)
  import scipy.signal  # noqa: PLC0415 (slow import, only for other windows)

  return scipy.signal.get_window(window, length, fftbins=True)


def stft(
  x: np.ndarray,
  *,
  nfft: int,
  hop: int,
  win_length: int | None = None,
  window: str = "hann",
  output: StftOutput = "log_magnitude",
  eps: float = 1e-6,
) -> np.ndarray:
  """Short-time Fourier transform of the last axis (frames without padding).

  Frame n covers samples ``[n * hop, n * hop + win_length)``; it is multiplied
  by the window (``scipy.signal.get_window(window, win_length)``, periodic),
  zero-padded to ``nfft`` and transformed with a one-sided real FFT.

  Args:
    x: ``[..., C, T]`` real array.
    nfft: FFT size (>= win_length); F = nfft // 2 + 1 bins.
    hop: frame step in samples.
    win_length: frame length (default nfft).
    window: scipy window name ("hann", "boxcar", ...).
    output: "complex" (complex64 ``[..., C, F, N]``), "real_imag" (float32
      ``[..., 2C, F, N]``, real/imag interleaved per channel), "magnitude" or
      "log_magnitude" (``log(|X| + eps)``), float32 ``[..., C, F, N]``.
    eps: floor inside the logarithm.

  Returns:
    The spectrogram as described by ``output``.
  """
  win_length = nfft if win_length is None else win_length
  _check_window(win_length, hop)
  if nfft < win_length:
    raise ValueError(f"nfft={nfft} must be >= win_length={win_length}.")
  x = np.asarray(x, dtype=np.float64)
  if x.ndim < 2:
    raise ValueError(f"stft needs [..., C, T], got shape {x.shape}.")

  frames = split_intervals(x, interval=win_length, hop=hop)  # [..., C, N, W]
  taper = _taper(window, win_length)
  spec = np.fft.rfft(frames * taper, n=nfft, axis=-1)  # [..., C, N, F]
  spec = np.swapaxes(spec, -1, -2)  # [..., C, F, N]
  if output == "complex":
    return spec.astype(np.complex64)
  if output == "real_imag":
    parts = np.stack([spec.real, spec.imag], axis=-3)  # [..., C, 2, F, N]
    shape = (*spec.shape[:-3], 2 * spec.shape[-3], *spec.shape[-2:])
    return parts.reshape(shape).astype(np.float32)
  if output == "magnitude":
    return np.abs(spec).astype(np.float32)
  if output == "log_magnitude":
    return np.log(np.abs(spec) + eps).astype(np.float32)
  raise ValueError(
    f"stft output {output!r} unknown; use complex, real_imag, magnitude or "
    "log_magnitude."
  )
