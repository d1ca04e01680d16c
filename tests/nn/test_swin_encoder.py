"""SWIN encoder: shapes, MAE visibility, dropout, decoder, paper sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.nn import (
  MAEDecoderTiny,
  SwinMODAcoustic,
  SwinMODSeismic,
  SwinTiny,
  visible_from_ids,
)
from tests.nn import _util

B, C, H, W = 2, 2, 6, 12
PATCH = (1, 2)
GRID = (H // PATCH[0], W // PATCH[1])  # 6 x 6 patches
N = GRID[0] * GRID[1]
N_KEEP = 9


def _keep_ids(key, batch=B):
  perms = jax.vmap(lambda k: jax.random.permutation(k, N))(
    jax.random.split(key, batch)
  )
  return perms[:, :N_KEEP].astype(jnp.int32)


def _pixel_mask(ids_keep):
  """bool [B, 1, H, W], True on pixels of masked patches."""
  visible = visible_from_ids(ids_keep, N).reshape(-1, *GRID)
  visible = jnp.repeat(jnp.repeat(visible, PATCH[0], 1), PATCH[1], 2)
  return ~visible[:, None]


@pytest.fixture(scope="module")
def model_and_vars():
  model = SwinTiny(patch_size=PATCH, pool="mean")
  x = jnp.zeros((B, C, H, W))
  return model, _util.init(model, jax.random.key(0), x, train=False)


def test_shapes_and_aux(model_and_vars, key):
  model, variables = model_and_vars
  x = jax.random.normal(key, (B, C, H, W))
  ids = _keep_ids(key)
  feats, aux = _util.apply(model, variables, x, ids, train=False)
  assert feats.shape == (B, 16)
  # grid 6x6 padded to multiples of window * 2 = 4 -> 8x8, last stage 4x4.
  assert aux["stage0"].shape == (B, 8, 8, 8)
  assert aux["tokens"].shape == (B, 4, 4, 16)
  assert aux["visible"].shape == (B, 4, 4)
  assert aux["patch_latent"].shape == (B, *GRID, 16)
  with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
    jax.eval_shape(lambda: model.init(key, x[0], train=False))
  with pytest.raises(ValueError, match="divisible by the patch"):
    jax.eval_shape(lambda: model.init(key, x[..., :11], train=False))


def test_mae_encoder_sees_only_visible_patches(model_and_vars, key):
  model, variables = model_and_vars
  k1, k2 = jax.random.split(key)
  x = jax.random.normal(k1, (B, C, H, W))
  ids = _keep_ids(k2)
  masked = _pixel_mask(ids)
  other = jnp.where(masked, 100.0 * jax.random.normal(k2, x.shape), x)
  assert float(jnp.abs(other - x).max()) > 1.0

  def run(inp):
    return _util.apply(model, variables, inp, ids, train=False)

  (f1, a1), (f2, a2) = run(x), run(other)
  np.testing.assert_array_equal(f1, f2)
  np.testing.assert_array_equal(a1["patch_latent"], a2["patch_latent"])
  # Masked tokens are zero in the first stage output.
  vis0 = jnp.pad(
    visible_from_ids(ids, N).reshape(B, *GRID),
    ((0, 0), (0, 2), (0, 2)),
    constant_values=True,
  )
  np.testing.assert_array_equal(
    jnp.where(vis0[..., None], 0.0, a1["stage0"]), 0.0
  )
  # Gradient w.r.t. the input is exactly zero on masked pixels, not on all
  # visible ones.
  grad = jax.jit(
    jax.grad(lambda inp: model.apply(variables, inp, ids, train=False)[0].sum())
  )(x)
  np.testing.assert_array_equal(jnp.where(masked, grad, 0.0), 0.0)
  assert float(jnp.abs(jnp.where(masked, 0.0, grad)).sum()) > 0.0
  # ... while the unmasked encoder does depend on those pixels.
  f_other = _util.apply(model, variables, other, train=False)[0]
  assert not np.allclose(
    f_other, _util.apply(model, variables, x, train=False)[0]
  )


def test_all_visible_mask_equals_plain_encoder(model_and_vars, key):
  model, variables = model_and_vars
  x = jax.random.normal(key, (B, C, H, W))
  ids = jnp.tile(jnp.arange(N, dtype=jnp.int32)[::-1], (B, 1))
  f_mae, _ = _util.apply(model, variables, x, ids, train=False)
  f_plain, _ = _util.apply(model, variables, x, train=False)
  np.testing.assert_allclose(f_mae, f_plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("exact_rng", [False, True], ids=["hash", "exact"])
def test_dropout_only_in_train(key, exact_rng):
  # One stage, one block: every dropout site (attention, projection, MLP,
  # stochastic depth) at a compile cost a test can afford. rbg keys compile
  # much faster than threefry on CPU.
  model = SwinTiny(
    patch_size=PATCH, depths=(1,), pool="mean", exact_dropout_rng=exact_rng
  )
  x = jax.random.normal(key, (B, C, H, W))
  variables = _util.init(model, key, x, train=False)

  def run(seed, train):
    rngs = {"dropout": jax.random.key(seed, impl="rbg")}
    return _util.apply(model, variables, x, rngs=rngs, train=train)[0]

  np.testing.assert_array_equal(run(1, False), run(2, False))
  assert not np.allclose(run(1, True), run(2, True))
  np.testing.assert_array_equal(run(1, True), run(1, True))


def test_hash_dropout_encoder_calls_the_prng_once(model_and_vars, key):
  # All dropout and stochastic-depth sites share one draw of seed words
  # (msjax.nn.swin.dropout_seeds): one fold_in (make_rng) and one bits.
  model, variables = model_and_vars
  x = jnp.ones((B, C, H, W))
  rngs = {"dropout": jax.random.key(1)}
  jaxpr = str(
    jax.make_jaxpr(
      lambda: _util.apply(model, variables, x, rngs=rngs, train=True)
    )()
  )
  assert jaxpr.count("random_bits") == 1
  assert jaxpr.count("random_fold_in") == 1


def test_decoder_reconstructs_every_masked_patch(model_and_vars, key):
  model, variables = model_and_vars
  x = jax.random.normal(key, (B, C, H, W))
  ids = _keep_ids(key)
  _, aux = _util.apply(model, variables, x, ids, train=False)
  patch_dim = PATCH[0] * PATCH[1] * C
  decoder = MAEDecoderTiny(patch_dim=patch_dim)
  latent = aux["patch_latent"]
  dvars = _util.init(decoder, key, latent, ids, train=False)
  recon = _util.apply(decoder, dvars, latent, ids, train=False)
  assert recon.shape == (B, N, patch_dim)
  masked = ~visible_from_ids(ids, N)
  assert int(masked.sum()) == B * (N - N_KEEP)
  rows = recon[masked].reshape(B, N - N_KEEP, patch_dim)
  assert rows.shape == (B, N - N_KEEP, patch_dim)
  # Masked positions are decoded from the mask token: the latent there is
  # ignored; visible positions use it.
  noisy = jnp.where(masked.reshape(B, *GRID)[..., None], 5.0, latent)
  recon2 = _util.apply(decoder, dvars, noisy, ids, train=False)
  np.testing.assert_allclose(recon2, recon, rtol=1e-5, atol=1e-5)
  changed = _util.apply(decoder, dvars, latent + 1.0, ids, train=False)
  assert not np.allclose(changed, recon)


def test_paper_size_parameter_counts():
  """FOCAL MOD encoders: seismic [2, 10, 20] and acoustic [2, 10, 1600]."""
  key = jax.random.key(0)

  def count(model, shape):
    shapes = jax.eval_shape(
      lambda: model.init(key, jnp.zeros(shape), train=False)
    )
    return _util.num_params(shapes["params"])

  seismic = count(SwinMODSeismic(), (1, 2, 10, 20))
  acoustic = count(SwinMODAcoustic(), (1, 2, 10, 1600))
  total = seismic + acoustic
  assert abs(total - 11.8e6) / 11.8e6 < 0.06, total
  # Same trunk; they differ only in the patch embedding (1x1 vs 1x40 on 2
  # channels) and the flatten head (last grid 3x6 vs 3x12 of 256 channels).
  assert acoustic - seismic == (2 * 40 - 2) * 64 + (3 * 12 - 3 * 6) * 256 * 256
