"""Tests for msjax.kernels.masking (SPEC §4.3 masking and L_rec)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.masking import (
  masked_mse,
  num_kept,
  patchify,
  random_patch_mask,
  restore_order,
  take_visible,
  unpatchify,
)


@pytest.mark.parametrize(
  ("n", "ratio"), [(16, 0.75), (10, 0.75), (7, 0.5), (5, 0.0), (12, 0.9)]
)
def test_mask_keeps_exact_count(key, n, ratio):
  b = 6
  m = random_patch_mask(key, b, n, mask_ratio=ratio)
  n_keep = int(n * (1 - ratio))
  assert n_keep == num_kept(n, mask_ratio=ratio)
  assert m.ids_keep.shape == (b, n_keep) and m.ids_keep.dtype == jnp.int32
  assert m.ids_restore.shape == (b, n) and m.mask.dtype == jnp.bool_
  mask = np.asarray(m.mask)
  np.testing.assert_array_equal((~mask).sum(axis=1), n_keep)
  for row in range(b):
    # ids_keep lists exactly the unmasked patches, each once.
    keep = np.asarray(m.ids_keep[row])
    assert len(set(keep.tolist())) == n_keep
    np.testing.assert_array_equal(np.sort(keep), np.flatnonzero(~mask[row]))
    # ids_restore is a permutation.
    np.testing.assert_array_equal(np.sort(m.ids_restore[row]), np.arange(n))


def test_mask_differs_across_rows_and_keys_and_is_deterministic(key):
  m1 = random_patch_mask(key, 8, 32)
  m2 = random_patch_mask(key, 8, 32)
  m3 = random_patch_mask(jax.random.fold_in(key, 1), 8, 32)
  np.testing.assert_array_equal(m1.mask, m2.mask)
  np.testing.assert_array_equal(m1.ids_keep, m2.ids_keep)
  assert not np.array_equal(m1.mask, m3.mask)
  rows = {tuple(r) for r in np.asarray(m1.mask).tolist()}
  assert len(rows) == 8


def test_mask_marginal_is_uniform():
  keys = jax.random.split(jax.random.key(3), 500)
  masks = jax.vmap(lambda k: random_patch_mask(k, 4, 8).mask)(keys)
  freq = np.asarray(masks).mean(axis=(0, 1))
  np.testing.assert_allclose(freq, 0.75, atol=0.04)


def test_take_visible_and_restore_order(key):
  b, n, d = 3, 10, 2
  tokens = jnp.arange(b * n * d, dtype=jnp.float32).reshape(b, n, d)
  m = random_patch_mask(key, b, n, mask_ratio=0.6)
  visible = take_visible(tokens, m.ids_keep)
  for row in range(b):
    np.testing.assert_array_equal(
      visible[row], np.asarray(tokens)[row, np.asarray(m.ids_keep[row])]
    )
  fill = jnp.array([-1.0, -2.0])
  full = restore_order(visible, fill, m.ids_restore)
  expected = np.where(
    np.asarray(m.mask)[..., None], np.asarray(fill), np.asarray(tokens)
  )
  np.testing.assert_array_equal(full, expected)


def _numpy_patchify(x, ph, pw):
  b, c, h, w = x.shape
  out = []
  for r in range(h // ph):
    for q in range(w // pw):
      block = x[
        :, :, r * ph : (r + 1) * ph, q * pw : (q + 1) * pw
      ]  # [B,C,ph,pw]
      out.append(block.transpose(0, 2, 3, 1).reshape(b, -1))
  return np.stack(out, axis=1)


def test_patchify_matches_numpy_and_round_trips():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 8, 12)).astype(np.float32)
  p = patchify(x, patch_size=(4, 3))
  assert p.shape == (2, 8, 36)
  np.testing.assert_array_equal(p, _numpy_patchify(x, 4, 3))
  back = unpatchify(p, patch_size=(4, 3), image_shape=(3, 8, 12))
  np.testing.assert_array_equal(back, x)
  # And the other way round: unpatchify then patchify.
  q = rng.normal(size=(2, 8, 36)).astype(np.float32)
  np.testing.assert_array_equal(
    patchify(
      unpatchify(q, patch_size=(4, 3), image_shape=(3, 8, 12)),
      patch_size=(4, 3),
    ),
    q,
  )


def test_patchify_bad_shapes():
  with pytest.raises(ValueError, match="divisible"):
    patchify(jnp.zeros((1, 1, 8, 10)), patch_size=(4, 4))
  with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
    patchify(jnp.zeros((1, 8, 8)), patch_size=(4, 4))
  with pytest.raises(ValueError, match="does not match"):
    unpatchify(jnp.zeros((1, 5, 16)), patch_size=(4, 4), image_shape=(1, 8, 8))


def _numpy_masked_mse(t, p, mask, norm_pix):
  b, n, _ = t.shape
  if norm_pix:
    mean = t.mean(-1, keepdims=True)
    var = t.var(-1, keepdims=True, ddof=1)
    t = (t - mean) / np.sqrt(var + 1e-6)
  per_sample = []
  for row in range(b):
    vals = [
      np.mean((t[row, k] - p[row, k]) ** 2) for k in range(n) if mask[row, k]
    ]
    per_sample.append(np.mean(vals))
  return np.mean(per_sample)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_masked_mse_matches_numpy(key, norm_pix_loss, x64):
  rng = np.random.default_rng(1)
  t = rng.normal(size=(4, 9, 6)) * 2 + 1
  p = rng.normal(size=(4, 9, 6))
  mask = np.asarray(random_patch_mask(key, 4, 9, mask_ratio=0.6).mask)
  got = masked_mse(t, p, mask, norm_pix_loss=norm_pix_loss)
  ref = _numpy_masked_mse(t, p, mask, norm_pix_loss)
  np.testing.assert_allclose(got, ref, rtol=1e-12)
  # Visible patches do not matter; masked ones do.
  p2 = p.copy()
  p2[~mask] += 10.0
  np.testing.assert_allclose(
    masked_mse(t, p2, mask, norm_pix_loss=norm_pix_loss), ref, rtol=1e-12
  )
  p2[mask] += 1.0
  assert float(masked_mse(t, p2, mask, norm_pix_loss=norm_pix_loss)) != (
    pytest.approx(ref)
  )


def test_masked_mse_bad_shapes():
  with pytest.raises(ValueError, match="mask"):
    masked_mse(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), jnp.zeros((2, 5)))
  with pytest.raises(ValueError, match="prediction"):
    masked_mse(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 2)), jnp.zeros((2, 4)))


def test_mask_bad_config(key):
  with pytest.raises(ValueError, match="mask_ratio"):
    random_patch_mask(key, 2, 4, mask_ratio=1.0)
  with pytest.raises(ValueError, match="keeps none"):
    random_patch_mask(key, 2, 3, mask_ratio=0.8)
