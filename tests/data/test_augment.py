"""Tests of the keyed time-series augmentations (msjax.data.augment)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.data import augment

B, C, T = 6, 3, 40
_SPECTRO_ONLY = {"frequency_mask"}


def _series(seed: int = 0, shape=(B, C, T)) -> jax.Array:
  # Strictly positive values: a zero in the output can only come from masking.
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(0.5, 2.0, size=shape), jnp.float32)


def _input_for(name: str) -> jax.Array:
  return _series(shape=(B, C, 8, 10)) if name in _SPECTRO_ONLY else _series()


# Hyperparameters large enough that every op changes its input.
_STRONG = {
  "time_mask": {"min_fraction": 0.2, "max_fraction": 0.3},
  "frequency_mask": {"min_fraction": 0.25, "max_fraction": 0.4},
  "negation": {"probability": 0.5},
}


@functools.cache
def _compiled(name: str, params: tuple) -> object:
  op = augment.OPS[name]
  return jax.jit(lambda k, v: op(k, v, **dict(params)))


def _apply(name: str, key: jax.Array, x: jax.Array, **params) -> jax.Array:
  """The op under jit (cached per op and hyperparameters: fast tests)."""
  return _compiled(name, tuple(sorted(params.items())))(key, x)


@jax.jit
def _every_op(key: jax.Array, series: jax.Array, spectro: jax.Array) -> dict:
  """All ops in one compilation (series input, or spectrogram input)."""
  return {
    name: op(
      key, spectro if name in _SPECTRO_ONLY else series, **_STRONG.get(name, {})
    )
    for name, op in augment.OPS.items()
  }


@functools.cache
def _outputs(seed: int, identical: bool) -> dict:
  """numpy outputs of every op for key(seed); identical: all samples equal."""
  series, spectro = _series(), _series(shape=(B, C, 8, 10))
  if identical:
    series = jnp.broadcast_to(series[:1], series.shape)
    spectro = jnp.broadcast_to(spectro[:1], spectro.shape)
  out = _every_op(jax.random.key(seed), series, spectro)
  return {"series": series, "spectro": spectro} | out


@pytest.mark.parametrize("name", sorted(augment.OPS))
def test_shape_dtype_and_determinism(name):
  x = _input_for(name)
  out = _outputs(0, False)[name]
  assert out.shape == x.shape and out.dtype == x.dtype
  again = _every_op(jax.random.key(0), _series(), _series(shape=(B, C, 8, 10)))
  np.testing.assert_array_equal(out, again[name])
  assert not np.array_equal(out, _outputs(1, False)[name])


@pytest.mark.parametrize("name", sorted(augment.OPS))
def test_independent_randomness_per_sample(name):
  # Identical samples must be transformed differently.
  outputs = _outputs(0, True)
  x = outputs["spectro" if name in _SPECTRO_ONLY else "series"]
  delta = np.asarray(outputs[name] - x)
  distinct = {delta[b].tobytes() for b in range(B)}
  assert len(distinct) >= 2


def test_half_precision_keeps_dtype(key):
  x = _series().astype(jnp.bfloat16)

  @jax.jit
  def some_ops(k, v):
    return [augment.OPS[n](k, v) for n in ("jitter", "time_warp", "time_mask")]

  for out in some_ops(key, x):
    assert out.dtype == jnp.bfloat16 and out.shape == x.shape
    assert np.all(np.isfinite(np.asarray(out, np.float32)))


def test_eager_equals_jit(key):
  x = _series()
  np.testing.assert_allclose(
    augment.scaling(key, x), _apply("scaling", key, x), rtol=1e-6
  )


def test_negation_twice_is_identity_and_flips_whole_samples(key):
  x = _series()
  once = _apply("negation", key, x, probability=0.5)
  np.testing.assert_array_equal(
    _apply("negation", key, once, probability=0.5), x
  )
  flipped = np.all(np.asarray(once) == -np.asarray(x), axis=(1, 2))
  kept = np.all(np.asarray(once) == np.asarray(x), axis=(1, 2))
  assert np.all(flipped | kept)
  np.testing.assert_array_equal(_apply("negation", key, x, probability=1.0), -x)


def test_permutation_preserves_values_per_channel(key):
  x = _series()
  out = np.asarray(_apply("permutation", key, x, num_segments=5))
  np.testing.assert_array_equal(np.sort(out, -1), np.sort(np.asarray(x), -1))
  # Segments move as blocks: every output segment is some input segment.
  xs = np.asarray(x).reshape(B, C, 5, 8)
  for b in range(B):
    for seg in range(5):
      block = out[b, :, seg * 8 : (seg + 1) * 8]
      assert any(np.array_equal(block, xs[b, :, j]) for j in range(5))
  assert not np.array_equal(out, np.asarray(x))


def test_permutation_unequal_segments(key):
  x = _series(shape=(B, C, 23))
  out = np.asarray(_apply("permutation", key, x, num_segments=4))
  np.testing.assert_array_equal(np.sort(out, -1), np.sort(np.asarray(x), -1))
  with pytest.raises(ValueError, match="num_segments"):
    _apply("permutation", key, x, num_segments=24)


def test_channel_shuffle_permutes_channels(key):
  x = _series(shape=(32, 4, T))
  out = np.asarray(_apply("channel_shuffle", key, x))
  xn = np.asarray(x)
  moved = 0
  for b in range(32):
    perm = [
      next(j for j in range(4) if np.array_equal(out[b, i], xn[b, j]))
      for i in range(4)
    ]
    assert sorted(perm) == [0, 1, 2, 3]
    moved += perm != [0, 1, 2, 3]
  assert moved >= 16  # 23 of 24 permutations move something


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_time_mask_zeroes_requested_span(fraction, key):
  x = _series()
  out = np.asarray(
    _apply(
      "time_mask",
      key,
      x,
      min_fraction=fraction,
      max_fraction=fraction,
      num_masks=1,
    )
  )
  width = round(fraction * T)
  zero = out == 0
  for b in range(B):
    cols = np.flatnonzero(zero[b, 0])
    assert len(cols) == width
    assert np.all(np.diff(cols) == 1)  # one contiguous span
    assert np.all(zero[b] == zero[b, :1])  # same span on every channel
  np.testing.assert_array_equal(out[~zero], np.asarray(x)[~zero])


def test_frequency_mask_zeroes_whole_bins(key):
  x = _series(shape=(B, C, 16, 10))
  out = np.asarray(
    _apply("frequency_mask", key, x, min_fraction=0.25, max_fraction=0.25)
  )
  zero = out == 0
  for b in range(B):
    rows = np.flatnonzero(zero[b, 0, :, 0])
    assert len(rows) == 4 and np.all(np.diff(rows) == 1)
    assert np.all(zero[b] == zero[b, :1, :, :1])  # all channels and frames
  np.testing.assert_array_equal(out[~zero], np.asarray(x)[~zero])
  with pytest.raises(ValueError, match="rank"):
    _apply("frequency_mask", key, _series())


def test_time_mask_on_spectrograms_masks_frames(key):
  x = _series(shape=(B, C, 8, 20))
  out = np.asarray(
    _apply("time_mask", key, x, min_fraction=0.2, max_fraction=0.2)
  )
  zero = out == 0
  for b in range(B):
    assert np.all(zero[b] == zero[b, :1, :1, :])
    assert zero[b, 0, 0].sum() == 4


def test_jitter_and_scaling_statistics(key):
  x = jnp.ones((512, 2, 64), jnp.float32)
  noise = np.asarray(_apply("jitter", key, x, sigma=0.1)) - 1.0
  assert abs(noise.mean()) < 0.005
  assert abs(noise.std() - 0.1) < 0.005
  scaled = np.asarray(_apply("scaling", key, x, sigma=0.2))
  factors = scaled[:, :, 0]
  assert np.all(scaled == factors[:, :, None])  # one factor per channel
  assert abs(factors.mean() - 1.0) < 0.03
  assert abs(factors.std() - 0.2) < 0.02


def test_magnitude_warp_is_smooth_positive_and_identity_at_zero(key):
  x = jnp.ones((64, 2, 100), jnp.float32)
  curve = np.asarray(_apply("magnitude_warp", key, x, sigma=0.1, num_knots=4))
  assert np.all(curve > 0.4)
  # Smooth: neighbouring samples differ far less than the curve varies.
  assert np.abs(np.diff(curve, axis=-1)).max() < 0.05
  assert curve.std() > 0.03
  np.testing.assert_array_equal(
    _apply("magnitude_warp", key, _series(), sigma=0.0), _series()
  )


def test_time_warp_identity_and_monotone_resampling(key):
  x = _series()
  np.testing.assert_allclose(
    _apply("time_warp", key, x, sigma=0.0), x, rtol=1e-5, atol=1e-5
  )
  # A ramp stays a non-decreasing ramp with the same end points.
  ramp = jnp.broadcast_to(jnp.arange(T, dtype=jnp.float32), (B, C, T))
  warped = np.asarray(_apply("time_warp", key, ramp, sigma=0.5))
  assert np.all(np.diff(warped, axis=-1) >= -1e-4)
  np.testing.assert_allclose(warped[..., 0], 0.0, atol=1e-4)
  np.testing.assert_allclose(warped[..., -1], T - 1, atol=1e-3)
  assert np.abs(warped - np.asarray(ramp)).max() > 0.5


def test_augment_composition_and_validation(key):
  x = _series()
  ops = ("scaling", "negation", "jitter")
  params = {"jitter": {"sigma": 0.0}}

  @jax.jit
  def composed_and_manual(k, v):
    out = augment.augment(k, v, ops=ops, params=params)
    manual = v  # by hand, with the documented per-op keys
    for i, name in enumerate(ops):
      k_op, _ = jax.random.split(jax.random.fold_in(k, i))
      manual = augment.OPS[name](k_op, manual, **params.get(name, {}))
    untouched = augment.augment(k, v, ops=ops, probability=0.0)
    return out, manual, untouched

  out, manual, untouched = composed_and_manual(key, x)
  np.testing.assert_array_equal(out, manual)
  assert not np.allclose(out, x)
  np.testing.assert_array_equal(untouched, x)  # probability 0: no change
  with pytest.raises(ValueError, match="unknown augmentation"):
    augment.augment(key, x, ops=("jitter", "cutmix"))
  with pytest.raises(ValueError, match="hyperparameters"):
    augment.augment(key, x, ops=("jitter",), params={"jitter": {"sd": 1.0}})
  with pytest.raises(ValueError, match="sigma"):
    augment.time_warp(key, x, sigma=-0.1)
  with pytest.raises(ValueError, match="num_knots"):
    augment.magnitude_warp(key, x, num_knots=0)
  with pytest.raises(ValueError, match="probability"):
    augment.negation(key, x, probability=1.5)
  with pytest.raises(ValueError, match="max_fraction"):
    augment.time_mask(key, x, min_fraction=0.5, max_fraction=0.2)
  with pytest.raises(ValueError, match="rank"):
    augment.jitter(key, x[0])


def test_augment_probability_mixes_samples(key):
  x = _series(shape=(64, C, T))
  fn = jax.jit(
    lambda k, v: augment.augment(
      k,
      v,
      ops=("negation",),
      params={"negation": {"probability": 1.0}},
      probability=0.5,
    )
  )
  out = np.asarray(fn(key, x))
  negated = np.all(out == -np.asarray(x), axis=(1, 2))
  assert 16 <= negated.sum() <= 48
  assert np.all(negated | np.all(out == np.asarray(x), axis=(1, 2)))


def test_vmap_over_extra_axis(key):
  # Two views via vmap over keys: independent outputs.
  x = _series()
  keys = jax.random.split(key, 2)
  views = jax.jit(jax.vmap(lambda k: augment.augment(k, x, ops=("jitter",))))(
    keys
  )
  assert views.shape == (2, *x.shape)
  assert not np.allclose(views[0], views[1])
