"""Keyed time-series augmentations in JAX, batched, on device.

Every op has the form ``op(key, x, **hyperparameters) -> x_aug`` with ``x`` of
shape ``[B, C, T]`` (time series, channels first) or ``[B, C, F, N]``
(spectrograms; time is always the last axis). Each sample draws its own
randomness from ``jax.random.split(key, B)``; the output has the shape and
dtype of ``x`` (computed in float32 for 16-bit inputs). All ops are pure and
``jit``/``vmap``-able; hyperparameters are static Python numbers.

This module imports only jax (methods import it to make views on device).

References:
  Um et al., "Data augmentation of wearable sensor data for Parkinson's disease
  monitoring using convolutional neural networks", ICMI 2017 (jitter,
  scaling, magnitude/time warp, permutation). Park et al., "SpecAugment",
  Interspeech 2019 (time/frequency masking).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
  "OPS",
  "augment",
  "channel_shuffle",
  "frequency_mask",
  "jitter",
  "magnitude_warp",
  "negation",
  "permutation",
  "scaling",
  "time_mask",
  "time_warp",
]


def _prepare(x: ArrayLike, min_rank: int = 3) -> tuple[jax.Array, Any]:
  """Checks rank, returns ``x`` as float (>= float32) and its original dtype."""
  x = jnp.asarray(x)
  if x.ndim < min_rank or x.ndim > 4:
    raise ValueError(
      f"x must be [B, C, T] or [B, C, F, N] (rank {min_rank}..4), got shape "
      f"{x.shape}."
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"x must be floating point, got {x.dtype}.")
  dtype = x.dtype
  if dtype in (jnp.float16, jnp.bfloat16):
    x = x.astype(jnp.float32)
  return x, dtype


def _check_nonnegative(**values: float) -> None:
  for name, value in values.items():
    if not value >= 0:
      raise ValueError(f"{name} must be >= 0, got {value}.")


def _check_probability(probability: float) -> None:
  if not 0.0 <= probability <= 1.0:
    raise ValueError(f"probability must be in [0, 1], got {probability}.")


def _check_knots(num_knots: int) -> None:
  if int(num_knots) != num_knots or num_knots < 1:
    raise ValueError(f"num_knots must be a positive integer, got {num_knots}.")


def _per_sample(
  key: jax.Array, x: jax.Array, fn: Callable[[jax.Array, jax.Array], jax.Array]
) -> jax.Array:
  """Applies ``fn(key_b, x_b)`` to every sample with its own key."""
  keys = jax.random.split(key, x.shape[0])
  return jax.vmap(fn)(keys, x)


def jitter(key: jax.Array, x: ArrayLike, *, sigma: float = 0.03) -> jax.Array:
  """Adds i.i.d. Gaussian noise ``N(0, sigma^2)`` to every element."""
  x, dtype = _prepare(x)
  _check_nonnegative(sigma=sigma)
  noise = jax.random.normal(key, x.shape, x.dtype)
  return (x + sigma * noise).astype(dtype)


def scaling(key: jax.Array, x: ArrayLike, *, sigma: float = 0.1) -> jax.Array:
  """Multiplies each channel of each sample by a factor ``~ N(1, sigma^2)``."""
  x, dtype = _prepare(x)
  _check_nonnegative(sigma=sigma)
  shape = x.shape[:2] + (1,) * (x.ndim - 2)
  factor = 1.0 + sigma * jax.random.normal(key, shape, x.dtype)
  return (x * factor).astype(dtype)


def negation(
  key: jax.Array, x: ArrayLike, *, probability: float = 0.5
) -> jax.Array:
  """Flips the sign of whole samples, each with ``probability``."""
  x, dtype = _prepare(x)
  _check_probability(probability)
  flip = jax.random.bernoulli(key, probability, (x.shape[0],))
  sign = jnp.where(flip, -1.0, 1.0).astype(x.dtype)
  return (x * sign.reshape((-1,) + (1,) * (x.ndim - 1))).astype(dtype)


def channel_shuffle(key: jax.Array, x: ArrayLike) -> jax.Array:
  """Randomly permutes the channel axis (axis 1) of each sample."""
  x, dtype = _prepare(x)
  out = _per_sample(key, x, lambda k, xb: jax.random.permutation(k, xb, axis=0))
  return out.astype(dtype)


def _smooth_curve(
  key: jax.Array, num_knots: int, length: int, shape: tuple[int, ...]
) -> jax.Array:
  """``[*shape, length]`` smooth N(0,1) curves: Catmull-Rom through knots."""
  knots = jax.random.normal(key, shape + (num_knots + 2,))
  pos = jnp.linspace(0.0, num_knots + 1.0, length)
  seg = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, num_knots)
  frac = pos - seg
  padded = jnp.concatenate([knots[..., :1], knots, knots[..., -1:]], axis=-1)
  p0, p1, p2, p3 = (padded[..., seg + i] for i in range(4))
  f2, f3 = frac * frac, frac * frac * frac
  return 0.5 * (
    2 * p1
    + (p2 - p0) * frac
    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f2
    + (3 * p1 - p0 - 3 * p2 + p3) * f3
  )


def magnitude_warp(
  key: jax.Array, x: ArrayLike, *, sigma: float = 0.2, num_knots: int = 4
) -> jax.Array:
  """Multiplies each channel by a smooth random curve around 1.

  The curve is a Catmull-Rom spline through ``num_knots + 2`` evenly spaced
  knots drawn from ``N(1, sigma^2)`` (independently per sample and channel,
  shared across frequency bins for spectrograms).
  """
  x, dtype = _prepare(x)
  _check_nonnegative(sigma=sigma)
  _check_knots(num_knots)
  curve = 1.0 + sigma * _smooth_curve(key, num_knots, x.shape[-1], x.shape[:2])
  if x.ndim == 4:
    curve = curve[:, :, None, :]
  return (x * curve.astype(x.dtype)).astype(dtype)


def time_warp(
  key: jax.Array, x: ArrayLike, *, sigma: float = 0.2, num_knots: int = 4
) -> jax.Array:
  """Resamples each sample along a smooth random monotone time map.

  The local speed is ``exp(sigma * curve)`` (one smooth curve per sample,
  shared by its channels); its normalised cumulative sum maps output step
  ``t`` to input position ``u(t)`` with ``u(0) = 0``, ``u(T-1) = T-1``; values
  are linearly interpolated. ``sigma = 0`` is the identity.
  """
  x, dtype = _prepare(x)
  _check_nonnegative(sigma=sigma)
  _check_knots(num_knots)
  length = x.shape[-1]
  speed = jnp.exp(
    sigma * _smooth_curve(key, num_knots, length, (x.shape[0],))
  )  # [B, T]
  steps = 0.5 * (speed[:, 1:] + speed[:, :-1])
  cum = jnp.concatenate(
    [jnp.zeros_like(speed[:, :1]), jnp.cumsum(steps, axis=-1)], axis=-1
  )
  grid = cum / cum[:, -1:] * (length - 1)
  lo = jnp.clip(jnp.floor(grid).astype(jnp.int32), 0, length - 2)
  frac = (grid - lo).astype(x.dtype)
  shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (length,)
  lo, frac = lo.reshape(shape), frac.reshape(shape)
  left = jnp.take_along_axis(x, jnp.broadcast_to(lo, x.shape), axis=-1)
  right = jnp.take_along_axis(x, jnp.broadcast_to(lo + 1, x.shape), axis=-1)
  return (left + frac * (right - left)).astype(dtype)


def permutation(
  key: jax.Array, x: ArrayLike, *, num_segments: int = 4
) -> jax.Array:
  """Cuts time into ``num_segments`` near-equal segments and shuffles them.

  Segment ``k`` covers ``[floor(k T / n), floor((k+1) T / n))``; each sample
  draws its own segment order, shared by its channels (and frequency bins).
  """
  x, dtype = _prepare(x)
  length = x.shape[-1]
  if not 1 <= num_segments <= length:
    raise ValueError(
      f"num_segments must be in [1, T={length}], got {num_segments}."
    )
  segment = (jnp.arange(length) * num_segments) // length  # [T]

  def one(k: jax.Array, xb: jax.Array) -> jax.Array:
    rank = jax.random.permutation(k, num_segments)  # new position per segment
    order = jnp.argsort(rank[segment] * length + jnp.arange(length))
    return jnp.take(xb, order, axis=-1)

  return _per_sample(key, x, one).astype(dtype)


def _span_mask(
  key: jax.Array,
  x: jax.Array,
  axis: int,
  min_fraction: float,
  max_fraction: float,
  num_masks: int,
) -> jax.Array:
  """Zeroes ``num_masks`` random spans along ``axis`` (same for all channels).

  Each span has ``round(f * size)`` steps with ``f ~ U[min, max]`` and a start
  uniform over the positions where it fits.
  """
  if not 0.0 <= min_fraction <= max_fraction <= 1.0:
    raise ValueError(
      "need 0 <= min_fraction <= max_fraction <= 1, got "
      f"{min_fraction}, {max_fraction}."
    )
  if num_masks < 0:
    raise ValueError(f"num_masks must be >= 0, got {num_masks}.")
  size = x.shape[axis]
  pos = jnp.arange(size)
  k_width, k_start = jax.random.split(key)
  frac = jax.random.uniform(
    k_width, (x.shape[0], num_masks), minval=min_fraction, maxval=max_fraction
  )
  width = jnp.round(frac * size).astype(jnp.int32)
  start = jnp.floor(
    jax.random.uniform(k_start, (x.shape[0], num_masks)) * (size - width + 1)
  ).astype(jnp.int32)
  inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
  keep = ~jnp.any(inside, axis=1)  # [B, size]
  shape = [x.shape[0]] + [1] * (x.ndim - 1)
  shape[axis] = size
  return jnp.where(keep.reshape(shape), x, jnp.zeros((), x.dtype))


def time_mask(
  key: jax.Array,
  x: ArrayLike,
  *,
  min_fraction: float = 0.0,
  max_fraction: float = 0.1,
  num_masks: int = 1,
) -> jax.Array:
  """Zeroes random time spans (last axis) of each sample, all channels."""
  x, dtype = _prepare(x)
  return _span_mask(
    key, x, x.ndim - 1, min_fraction, max_fraction, num_masks
  ).astype(dtype)


def frequency_mask(
  key: jax.Array,
  x: ArrayLike,
  *,
  min_fraction: float = 0.0,
  max_fraction: float = 0.1,
  num_masks: int = 1,
) -> jax.Array:
  """Zeroes random frequency bands (axis 2) of spectrograms ``[B, C, F, N]``."""
  x, dtype = _prepare(x, min_rank=4)
  return _span_mask(key, x, 2, min_fraction, max_fraction, num_masks).astype(
    dtype
  )


OPS: dict[str, Callable[..., jax.Array]] = {
  "jitter": jitter,
  "scaling": scaling,
  "magnitude_warp": magnitude_warp,
  "time_warp": time_warp,
  "permutation": permutation,
  "time_mask": time_mask,
  "frequency_mask": frequency_mask,
  "negation": negation,
  "channel_shuffle": channel_shuffle,
}


def augment(
  key: jax.Array,
  x: ArrayLike,
  *,
  ops: Sequence[str] = ("jitter", "scaling"),
  params: Mapping[str, Mapping[str, float]] | None = None,
  probability: float = 1.0,
) -> jax.Array:
  """Applies ``ops`` in order, each with its own key.

  Args:
    key: PRNG key.
    x: ``[B, C, T]`` or ``[B, C, F, N]``.
    ops: names from :data:`OPS`, applied left to right.
    params: optional ``{op: {hyperparameter: value}}`` overrides.
    probability: each op is applied to each sample independently with this
      probability (the others pass through unchanged).

  Returns:
    Augmented ``x``, same shape and dtype.
  """
  params = dict(params or {})
  unknown = [name for name in list(ops) + list(params) if name not in OPS]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}; valid: {tuple(OPS)}.")
  _check_probability(probability)
  x = jnp.asarray(x)
  for i, name in enumerate(ops):
    k_op, k_apply = jax.random.split(jax.random.fold_in(key, i))
    try:
      out = OPS[name](k_op, x, **params.get(name, {}))
    except TypeError as err:
      raise ValueError(f"bad hyperparameters for {name!r}: {err}") from err
    if probability < 1.0:
      apply = jax.random.bernoulli(k_apply, probability, (x.shape[0],))
      out = jnp.where(apply.reshape((-1,) + (1,) * (x.ndim - 1)), out, x)
    x = out
  return x
