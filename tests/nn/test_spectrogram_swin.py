"""SpectrogramSwin: InfoMAE's SWIN encoder, unmasked, for any method."""

import jax
import numpy as np
import pytest

from msjax.nn import SpectrogramSwin, SwinEncoder
from msjax.nn.spectrogram_swin import compress_and_pad
from tests.nn import _util as u

SWIN = (
  ("depths", (2,)),
  ("embed_dim", 8),
  ("num_heads", 2),
  ("window", (2, 2)),
)


def test_compress_and_pad_is_signed_log1p_then_zero_padding():
  x = np.random.default_rng(0).normal(scale=50.0, size=(2, 2, 5, 3))
  got = np.asarray(compress_and_pad(x, (2, 2), "log1p"))
  assert got.shape == (2, 2, 6, 4) and got.dtype == np.float32
  expected = np.sign(x) * np.log(1.0 + np.abs(x))
  np.testing.assert_allclose(got[:, :, :5, :3], expected, rtol=1e-6)
  assert not got[:, :, 5:, :].any() and not got[:, :, :, 3:].any()
  raw = np.asarray(compress_and_pad(x, (5, 3), "none"))
  np.testing.assert_allclose(raw, x, rtol=1e-6)  # already on the grid
  with pytest.raises(ValueError, match="input compression 'log'"):
    compress_and_pad(x, (2, 2), "log")


def test_encodes_each_window_alone_and_matches_swin_on_compressed_input():
  x = np.random.default_rng(1).normal(size=(3, 2, 7, 5)).astype(np.float32)
  module = SpectrogramSwin(patch_size=(2, 1), swin=SWIN)
  variables = u.init(module, jax.random.key(0), x, train=False)
  features, _ = u.apply(module, variables, x, train=False)
  assert features.shape == (3, 8)
  alone, _ = u.apply(module, variables, x[1:2], train=False)
  np.testing.assert_allclose(alone[0], features[1], rtol=1e-5, atol=1e-6)
  # The same weights in a plain SwinEncoder, fed the compressed, padded map.
  swin = SwinEncoder(patch_size=(2, 1), pool="mean", out_dim=None, **dict(SWIN))
  h = np.sign(x) * np.log1p(np.abs(x))
  h = np.pad(h, ((0, 0), (0, 0), (0, 1), (0, 0)))
  direct, _ = u.apply(
    swin, {"params": variables["params"]["swin"]}, h, train=False
  )
  np.testing.assert_allclose(direct, features, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="needs \\[B, C, F, N\\]"):
    module.apply(variables, x[0], train=False)
