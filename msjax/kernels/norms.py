"""Euclidean norms with safe gradients: SPEC's ``n(x)`` (public).

:func:`l2_normalize` is the SPEC notation ``n(x) = x / max(||x||_2, 1e-12)``
that every similarity kernel applies; encoders, heads and methods use the
same function (``msjax.kernels.l2_normalize``). Pure ``jnp``: safe under
``jit``, ``vmap``, ``grad`` and ``shard_map``.
"""

import jax
import jax.numpy as jnp

__all__ = ["l2_normalize", "safe_norm"]

_NORM_EPS = 1e-12


def safe_norm(
  x: jax.Array, axis: int = -1, keepdims: bool = False
) -> jax.Array:
  """Euclidean norm whose value and gradient at ``0`` are ``0`` (not NaN).

  Args:
    x: array ``[..., E]``.
    axis: reduced axis.
    keepdims: keep the reduced axis.

  Returns:
    ``||x||_2`` along ``axis``.
  """
  sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
  positive = sq > 0
  safe_sq = jnp.where(positive, sq, 1.0)
  return jnp.where(positive, jnp.sqrt(safe_sq), 0.0)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """``n(x) = x / max(||x||_2, 1e-12)`` along ``axis`` (SPEC notation).

  Args:
    x: array ``[..., E]``.
    axis: normalised axis.

  Returns:
    Array of the same shape with unit-norm slices (zero slices stay zero).
  """
  return x / jnp.maximum(safe_norm(x, axis=axis, keepdims=True), _NORM_EPS)
