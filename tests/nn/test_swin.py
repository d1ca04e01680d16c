"""Window helpers and (shifted-)window attention against brute force."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.nn import ShiftedWindowAttention, SwinBlock, windows
from msjax.nn.swin import (
  DropPath,
  HashDropout,
  LayerNorm,
  dropout_seeds,
  hash_keep_mask,
  hash_mask_from_seeds,
  salted_seeds,
)
from tests.nn import _util


def test_partition_reverse_roundtrip_and_layout():
  x = jnp.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
  parts = windows.window_partition(x, (2, 3))
  assert parts.shape == (2, 4, 6, 3)
  # Window 1 (row block 0, column block 1), token 4 = (r=1, c=1) inside it.
  np.testing.assert_array_equal(parts[1, 1, 4], x[1, 1, 4])
  back = windows.window_reverse(parts, (2, 3), 4, 6)
  np.testing.assert_array_equal(back, x)
  with pytest.raises(ValueError, match="divisible"):
    windows.window_partition(x, (3, 3))


def test_relative_position_index_matches_offsets():
  wh, ww = 2, 3
  idx = windows.relative_position_index((wh, ww))
  coords = list(itertools.product(range(wh), range(ww)))
  seen = {}
  for i, (ri, ci) in enumerate(coords):
    for j, (rj, cj) in enumerate(coords):
      offset = (ri - rj, ci - cj)
      assert seen.setdefault(offset, idx[i, j]) == idx[i, j]
  assert len(set(seen.values())) == len(seen) == (2 * wh - 1) * (2 * ww - 1)
  assert idx.min() == 0 and idx.max() == (2 * wh - 1) * (2 * ww - 1) - 1


def test_masked_softmax_excludes_and_handles_empty_rows():
  logits = jnp.array([[1.0, 2.0, 3.0], [0.5, 0.1, 0.2]])
  allowed = jnp.array([[True, False, True], [False, False, False]])
  w = windows.masked_softmax(logits, allowed)
  np.testing.assert_allclose(
    w[0], jax.nn.softmax(jnp.array([1.0, -jnp.inf, 3.0])), rtol=1e-6
  )
  np.testing.assert_array_equal(w[1], 0.0)
  g = jax.grad(lambda x: windows.masked_softmax(x, allowed)[:, 0].sum())(logits)
  assert np.all(np.isfinite(g))


def _dense_reference(params, x, window, shift, visible, num_heads):
  """Brute force in the original frame, float64 numpy.

  Token (r, c) may attend (r', c') iff they fall in the same window of the
  cyclically shifted map and are true neighbours (|dr| < wh, |dc| < ww, no
  wrap-around), and (r', c') is visible.
  """
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = np.asarray(x, np.float64)
  b, h, w, d = x.shape
  wh, ww = window
  sh, sw = shift
  hd = d // num_heads
  coords = [(r, c) for r in range(h) for c in range(w)]
  tok = x.reshape(b, h * w, d)
  qkv = tok @ p["qkv"]["kernel"] + p["qkv"]["bias"]
  q, k, v = np.split(qkv, 3, axis=-1)
  table = p["relative_position_bias"]
  out = np.zeros_like(tok)
  for bi in range(b):
    for i, (r, c) in enumerate(coords):
      wid = (((r - sh) % h) // wh, ((c - sw) % w) // ww)
      keys, bias = [], []
      for j, (r2, c2) in enumerate(coords):
        same = (((r2 - sh) % h) // wh, ((c2 - sw) % w) // ww) == wid
        near = abs(r - r2) < wh and abs(c - c2) < ww
        if same and near and visible[bi, r2, c2]:
          keys.append(j)
          bias.append(table[(r - r2 + wh - 1) * (2 * ww - 1) + c - c2 + ww - 1])
      if not keys:  # an invisible query with no visible window-mate
        continue
      bias = np.array(bias)  # [K, heads]
      for hh in range(num_heads):
        sl = slice(hh * hd, (hh + 1) * hd)
        logit = q[bi, i, sl] @ k[bi, keys, sl].T * hd**-0.5 + bias[:, hh]
        a = np.exp(logit - logit.max())
        out[bi, i, sl] = (a / a.sum()) @ v[bi, keys, sl]
  out = out @ p["proj"]["kernel"] + p["proj"]["bias"]
  return out.reshape(b, h, w, d)


@pytest.mark.parametrize(
  "shift, masked",
  [((0, 0), False), ((1, 1), False), ((1, 2), True), ((0, 1), True)],
  ids=["plain", "shift11", "shift12-mae", "shift01-mae"],
)
def test_shifted_window_attention_equals_brute_force(key, shift, masked):
  window = (2, 3)
  h, w, d, heads = 4, 6, 8, 2
  x = jax.random.normal(key, (2, h, w, d))
  visible = np.ones((2, h, w), bool)
  if masked:
    visible = np.asarray(
      jax.random.bernoulli(jax.random.key(7), 0.5, (2, h, w))
    )
  # Parameters do not depend on the shift: one init for all cases.
  base = ShiftedWindowAttention(d, heads, window)
  variables = _util.init(base, jax.random.key(3), x, train=False)
  module = ShiftedWindowAttention(d, heads, window, shift)
  got = _util.apply(
    module, variables, x, jnp.asarray(visible) if masked else None, train=False
  )
  # A query whose window-mates are all invisible gets zeros (before proj).
  want = _dense_reference(
    variables["params"]["window"],
    x,
    window,
    shift,
    np.ones_like(visible) if not masked else visible,
    heads,
  )
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)


def test_shift_mask_blocks_wrapped_neighbours(key):
  """Perturbing a token changes only outputs in its own shifted region."""
  window, shift = (2, 2), (1, 1)
  x = jax.random.normal(key, (1, 4, 4, 4))
  module = ShiftedWindowAttention(4, 1, window, shift)
  variables = _util.init(module, key, x, train=False)
  base = _util.apply(module, variables, x, train=False)
  moved = _util.apply(module, variables, x.at[0, 0, 0].add(10.0), train=False)
  changed = np.any(np.abs(np.asarray(moved - base)) > 1e-6, axis=-1)[0]
  # (0, 0) shares a shifted window with (3, 3), (0, 3) and (3, 0) (cyclic
  # wrap), but none of them is a true neighbour: only (0, 0) itself changes.
  expected = np.zeros((4, 4), bool)
  expected[0, 0] = True
  np.testing.assert_array_equal(changed, expected)


def test_block_window_clamps_to_small_maps(key):
  x = jax.random.normal(key, (1, 2, 6, 8))
  block = SwinBlock(8, 2, (3, 3), (1, 1))
  variables = jax.eval_shape(lambda: block.init(key, x, train=False))
  assert variables["params"]["attn"]["window"][
    "relative_position_bias"
  ].shape == (3 * 5, 2)  # window (2, 3)
  assert windows.window_geometry(2, 6, (3, 3), (1, 1)) == ((2, 3), (0, 1))
  with pytest.raises(ValueError, match="D=8"):
    jax.eval_shape(lambda: block.init(key, x[..., :4], train=False))


def test_hash_keep_mask_rate_independence_and_determinism():
  key = jax.random.key(0)
  m = np.asarray(hash_keep_mask(key, 0.8, (256, 1024)))
  assert abs(m.mean() - 0.8) < 4 * np.sqrt(0.16 / m.size)
  # Neighbouring elements (along either axis) are uncorrelated.
  x = m.astype(np.float64) - m.mean()
  for a, b in ((x[:, 1:], x[:, :-1]), (x[1:], x[:-1])):
    assert abs(np.mean(a * b) / x.var()) < 0.02
  np.testing.assert_array_equal(m, hash_keep_mask(key, 0.8, (256, 1024)))
  other = np.asarray(hash_keep_mask(jax.random.key(1), 0.8, (256, 1024)))
  assert 0.6 < np.mean(m == other) < 0.7  # 0.8**2 + 0.2**2 = 0.68


@pytest.mark.parametrize("exact_rng", [False, True])
def test_hash_dropout_semantics(exact_rng):
  x = jnp.ones((64, 512))
  module = HashDropout(0.25, exact_rng)
  rngs = {"dropout": jax.random.key(3)}
  y = np.asarray(module.apply({}, x, train=True, rngs=rngs))
  # Inverted dropout: survivors scaled by 1 / keep, the rest exactly zero.
  assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
  assert abs((y == 0).mean() - 0.25) < 0.02
  np.testing.assert_array_equal(module.apply({}, x, train=False), x)
  assert np.all(HashDropout(1.0).apply({}, x, train=True, rngs=rngs) == 0)


def test_salted_seeds_give_unrelated_masks_per_site():
  seeds = dropout_seeds(jax.random.key(5))
  a = np.asarray(salted_seeds(seeds, ("enc", "block0", "HashDropout_0")))
  b = np.asarray(salted_seeds(seeds, ("enc", "block0", "HashDropout_1")))
  assert a.dtype == np.uint32 and a.shape == (2,)
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(
    a, salted_seeds(seeds, ("enc", "block0", "HashDropout_0"))
  )
  ma = np.asarray(hash_mask_from_seeds(a, 0.8, (256, 1024)))
  mb = np.asarray(hash_mask_from_seeds(b, 0.8, (256, 1024)))
  for m in (ma, mb):
    assert abs(m.mean() - 0.8) < 4 * np.sqrt(0.16 / m.size)
  # Independent sites agree on 0.8**2 + 0.2**2 = 0.68 of the elements.
  assert 0.67 < np.mean(ma == mb) < 0.69
  # The key-based mask is the seed-based one with seeds drawn from the key.
  key = jax.random.key(9)
  np.testing.assert_array_equal(
    hash_keep_mask(key, 0.7, (8, 16)),
    hash_mask_from_seeds(dropout_seeds(key), 0.7, (8, 16)),
  )


def test_shared_seeds_drop_per_site_and_per_sample():
  x = jnp.ones((4096, 1, 3))
  seeds = dropout_seeds(jax.random.key(2))
  y = np.asarray(DropPath(0.25).apply({}, x, train=True, seeds=seeds))
  rows = y[:, 0, 0]
  assert set(np.unique(rows)) == {0.0, np.float32(1 / 0.75)}
  assert np.all(y == rows[:, None, None])  # one draw per sample
  assert abs((rows == 0).mean() - 0.25) < 0.03

  class TwoSites(nn.Module):
    @nn.compact
    def __call__(self, x, seeds):
      return (
        HashDropout(0.5)(x, train=True, seeds=seeds),
        HashDropout(0.5)(x, train=True, seeds=seeds),
      )

  a, b = TwoSites().apply({}, jnp.ones((64, 256)), seeds)
  assert 0.45 < np.mean((np.asarray(a) == 0) == (np.asarray(b) == 0)) < 0.55


def test_swin_block_with_shared_seeds_makes_no_prng_call(key):
  # Every threefry call is a while loop in the CPU backend's program; with
  # shared seeds a block's five dropout sites make none.
  block = SwinBlock(8, 2, (2, 2), (1, 1), 2.0, True, 0.1, 0.1, 0.1)
  x = jnp.ones((2, 4, 4, 8))
  variables = block.init(key, x, train=False)
  seeds = dropout_seeds(key)

  def prng_calls(fn):
    text = str(jax.make_jaxpr(fn)())
    return sum(text.count(p) for p in ("random_bits", "random_fold_in"))

  shared = prng_calls(
    lambda: block.apply(variables, x, train=True, seeds=seeds)
  )
  own = prng_calls(
    lambda: block.apply(
      variables, x, train=True, rngs={"dropout": jax.random.key(1)}
    )
  )
  assert shared == 0
  assert own >= 10  # fold_in + bits at each of the five sites


def test_layer_norm_matches_flax(key):
  x = 3.0 + 2.0 * jax.random.normal(key, (4, 5, 32))
  params = {
    "scale": jax.random.normal(jax.random.key(1), (32,)),
    "bias": jax.random.normal(jax.random.key(2), (32,)),
  }
  mine = LayerNorm(1e-5)
  want = nn.LayerNorm(epsilon=1e-5).apply({"params": params}, x)
  got = mine.apply({"params": params}, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  shapes = jax.eval_shape(lambda: mine.init(key, x))["params"]
  assert jax.tree.map(lambda a: a.shape, shapes) == {
    "scale": (32,),
    "bias": (32,),
  }
