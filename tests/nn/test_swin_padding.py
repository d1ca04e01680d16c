"""SwinEncoder.pad_tokens: padding to the window grid and gradient scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax import nn as mnn

# patch 1x1, window 3, two stages: the grid is padded to multiples of 6.
_KW = dict(patch_size=(1, 1), embed_dim=16, depths=(2, 2), num_heads=2)


def _grads(pad_tokens, shape, pool="mean"):
  model = mnn.SwinEncoder(**_KW, pad_tokens=pad_tokens, pool=pool, out_dim=8)
  x = jax.random.normal(jax.random.key(1), shape)
  # Jitted: op-by-op, the two-stage SWIN's backward pass takes ~20 s.
  init = jax.jit(lambda k: model.init(k, x, train=False))
  params = init(jax.random.key(0))["params"]

  def loss(params):
    features, _ = model.apply({"params": params}, x, None, train=False)
    return jnp.sum(features**2)

  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  top = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads))
  return float(value), top


@pytest.mark.parametrize("pool", ["mean", "flatten"])
def test_masked_padding_keeps_gradients_at_the_unpadded_scale(pool):
  # 10 x 20 is padded to 12 x 24; 12 x 24 needs no padding.
  _, unpadded = _grads("visible", (2, 2, 12, 24), pool)
  _, visible = _grads("visible", (2, 2, 10, 20), pool)
  _, masked = _grads("masked", (2, 2, 10, 20), pool)
  assert np.isfinite(masked)
  assert masked < 100 * unpadded
  # FOCAL's visible padding: near-constant padding tokens through the
  # LayerNorms (the reason the option exists).
  assert visible > 1e6 * unpadded


def test_masked_padding_changes_nothing_without_padding():
  shape = (2, 2, 12, 24)
  assert _grads("visible", shape) == _grads("masked", shape)


def test_masked_padding_output_ignores_the_padding_region():
  # Padding is zeros whatever the input; what must not matter is whether
  # the padded tokens exist: a masked encoder on 10 x 20 equals the masked
  # encoder on the same data with an explicit visible mask of the patches.
  # Jitted: dispatched op by op, the encoder compiles each op (9 s).
  model = mnn.SwinEncoder(**_KW, pad_tokens="masked", out_dim=8)
  x = jax.random.normal(jax.random.key(1), (2, 2, 10, 20))
  params = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))
  every_patch = jnp.broadcast_to(jnp.arange(200), (2, 200))
  apply = jax.jit(
    lambda p, ids: model.apply({"params": p}, x, ids, train=False)[0]
  )
  plain = apply(params["params"], None)
  with_ids = apply(params["params"], every_patch)
  np.testing.assert_allclose(plain, with_ids, rtol=1e-6, atol=1e-6)
  visible = jax.jit(
    lambda p: mnn.SwinEncoder(**_KW, out_dim=8).apply(
      {"params": p}, x, None, train=False
    )[0]
  )(params["params"])
  assert not np.allclose(plain, visible, atol=1e-3)


def test_pad_tokens_is_checked():
  model = mnn.SwinEncoder(**_KW, pad_tokens="zeros")
  with pytest.raises(ValueError, match="pad_tokens must be"):
    model.init(jax.random.key(0), jnp.zeros((1, 2, 10, 20)), train=False)
