"""SwinEncoder.empty_tokens: all-zero input patches left out of attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax import nn as mnn

# patch 1x1, window 3, two stages: a 12 x 24 map needs no padding.
_KW = dict(patch_size=(1, 1), embed_dim=16, depths=(2, 2), num_heads=2)
_SHAPE = (2, 2, 12, 24)
_EMPTY_FRAMES = slice(6, 12)  # a time mask: 6 of 24 frames zeroed


def _input(shape=_SHAPE, mask_frames=True):
  x = jax.random.normal(jax.random.key(1), shape)
  return x.at[..., _EMPTY_FRAMES].set(0.0) if mask_frames else x


def _encoder(**kw):
  return mnn.SwinEncoder(**_KW, out_dim=8, **kw)


def _params(x):
  model = _encoder()
  return jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))


def _apply(model, variables, x, ids_keep=None):
  return jax.jit(lambda v, x, ids: model.apply(v, x, ids, train=False)[0])(
    variables, x, ids_keep
  )


def test_empty_patches_are_hidden_like_the_mae_path_hides_patches():
  x = _input()
  variables = _params(x)
  masked = _apply(_encoder(empty_tokens="masked"), variables, x)
  # The same encoder with SWIN's default, told by ids_keep which patches
  # to see: every patch outside the zeroed frames (same count per row).
  grid = np.arange(12 * 24).reshape(12, 24)
  keep = np.delete(grid, np.arange(24)[_EMPTY_FRAMES], axis=1).reshape(-1)
  ids = jnp.broadcast_to(jnp.asarray(keep), (2, keep.size))
  reference = _apply(_encoder(), variables, x, ids)
  np.testing.assert_allclose(masked, reference, rtol=1e-5, atol=1e-6)
  visible = _apply(_encoder(), variables, x)
  assert not np.allclose(masked, visible, atol=1e-3)


def test_without_empty_patches_nothing_changes():
  x = _input(mask_frames=False)
  variables = _params(x)
  # Equal up to rounding: the masked path runs every window through the
  # masked softmax with every key allowed.
  np.testing.assert_allclose(
    _apply(_encoder(empty_tokens="masked"), variables, x),
    _apply(_encoder(), variables, x),
    rtol=1e-5,
    atol=1e-6,
  )


def test_padding_counts_as_empty():
  # 10 x 20 is padded to 12 x 24; its data has no zero patch.
  x = _input((2, 2, 10, 20), mask_frames=False)
  variables = _params(x)
  np.testing.assert_allclose(
    _apply(_encoder(empty_tokens="masked"), variables, x),
    _apply(_encoder(pad_tokens="masked"), variables, x),
    rtol=1e-6,
    atol=1e-6,
  )


def _top_gradient(empty_tokens, mask_frames):
  x = _input(mask_frames=mask_frames)
  model = _encoder(empty_tokens=empty_tokens)
  params = _params(x)["params"]

  def loss(params):
    features, _ = model.apply({"params": params}, x, None, train=False)
    return jnp.sum(features**2)

  grads = jax.jit(jax.grad(loss))(params)
  return max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads))


def test_masked_empty_tokens_keep_gradients_at_the_unmasked_scale():
  unmasked = _top_gradient("visible", mask_frames=False)
  visible = _top_gradient("visible", mask_frames=True)
  masked = _top_gradient("masked", mask_frames=True)
  assert masked < 10 * unmasked
  # Windows of zeroed frames stay constant through every LayerNorm.
  assert visible > 1e4 * unmasked


def test_empty_tokens_is_checked():
  model = _encoder(empty_tokens="zeros")
  with pytest.raises(ValueError, match="empty_tokens must be"):
    model.init(jax.random.key(0), jnp.zeros(_SHAPE), train=False)
