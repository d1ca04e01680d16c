import numpy as np
import pytest

from msjax.data import alignment, signal


@pytest.mark.parametrize(
  "length,window,hop", [(10, 4, 2), (9, 3, 3), (5, 6, 1), (100, 50, 25)]
)
def test_sliding_windows_count_and_content(length, window, hop):
  x = np.arange(2 * length).reshape(2, length)
  out = signal.sliding_windows(x, window=window, hop=hop)
  starts = list(range(0, length - window + 1, hop))
  assert out.shape == (len(starts), 2, window)
  for n, s in enumerate(starts):
    np.testing.assert_array_equal(out[n], x[:, s : s + window])
  assert signal.num_windows(length, window=window, hop=hop) == len(starts)


def test_bad_window_rejected():
  with pytest.raises(ValueError, match="hop=0"):
    signal.sliding_windows(np.zeros(8), window=4, hop=0)


@pytest.mark.parametrize("method", ["polyphase", "fft"])
@pytest.mark.parametrize(
  "rate_in,rate_out", [(64, 50), (16_000, 8_000), (32, 50)]
)
def test_resample_keeps_a_band_limited_tone(method, rate_in, rate_out):
  seconds, freq = 8, 3.0
  t_in = np.arange(seconds * rate_in) / rate_in
  x = np.stack(
    [np.sin(2 * np.pi * freq * t_in), np.cos(2 * np.pi * freq * t_in)]
  ).astype(np.float32)
  y = signal.resample(x, rate_in=rate_in, rate_out=rate_out, method=method)
  assert y.shape == (2, seconds * rate_out) and y.dtype == np.float32
  t_out = np.arange(seconds * rate_out) / rate_out
  inner = slice(rate_out, -rate_out)  # edges carry filter transients
  np.testing.assert_allclose(
    y[0, inner], np.sin(2 * np.pi * freq * t_out)[inner], atol=2e-2
  )


def test_split_intervals_and_interval_fft_layout():
  x = np.random.default_rng(0).normal(size=(2, 200))
  parts = signal.split_intervals(x, interval=40, hop=20)
  assert parts.shape == (2, 9, 40)
  np.testing.assert_array_equal(parts[1, 4], x[1, 80:120])
  spec = signal.interval_fft(parts)
  assert spec.shape == (4, 9, 40) and spec.dtype == np.float32
  ref = np.fft.fft(x[1, 80:120])
  np.testing.assert_allclose(spec[2, 4], ref.real, atol=1e-4)
  np.testing.assert_allclose(spec[3, 4], ref.imag, atol=1e-4)


def test_stft_matches_a_direct_dft():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 100))
  nfft, hop = 16, 8
  frames = (100 - nfft) // hop + 1
  out = signal.stft(x, nfft=nfft, hop=hop, window="hann", output="complex")
  assert out.shape == (3, nfft // 2 + 1, frames)
  taper = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nfft) / nfft)
  n = np.arange(nfft)
  k = 3
  seg = x[2, 5 * hop : 5 * hop + nfft] * taper
  direct = np.sum(seg * np.exp(-2j * np.pi * k * n / nfft))
  np.testing.assert_allclose(out[2, k, 5], direct, rtol=1e-4)
  ri = signal.stft(x, nfft=nfft, hop=hop, output="real_imag")
  assert ri.shape == (6, 9, frames)
  np.testing.assert_allclose(ri[5], out[2].imag, atol=1e-5)
  logmag = signal.stft(x, nfft=nfft, hop=hop, output="log_magnitude")
  np.testing.assert_allclose(logmag, np.log(np.abs(out) + 1e-6), atol=1e-4)


def test_window_labels_rules():
  labels = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
  np.testing.assert_array_equal(
    alignment.window_labels(labels, window=4, hop=3), [1, -1, -1]
  )
  np.testing.assert_array_equal(
    alignment.window_labels(labels, window=4, hop=3, rule="majority"), [1, 2, 3]
  )


def test_interpolate_uniform_is_exact_for_linear_signals():
  t = np.array([0.0, 13.0, 20.0, 41.0, 60.0])
  values = np.stack([2 * t + 1, -t], axis=1)
  grid = np.arange(0, 60, 20.0)
  out = alignment.interpolate_uniform(t, values, grid)
  np.testing.assert_allclose(out, [2 * grid + 1, -grid])
