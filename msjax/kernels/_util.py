"""Numerical helpers shared by the kernels (private to :mod:`msjax.kernels`).

Everything here is a pure ``jnp`` function: safe under ``jit``, ``vmap``,
``grad`` and ``shard_map``.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
  "DOT_PRECISION",
  "as_float",
  "check_labels",
  "check_rank",
  "check_same_shape",
  "lse",
]

#: Precision of every matrix product inside the kernels. JAX's default lets
#: float32 products run in TF32 on GPUs (a 10-bit mantissa: relative errors
#: near 1e-3, ~1e-2 on ``1/tau``-scaled logits), which breaks SPEC's float32
#: tolerances; the kernels' products are small next to an encoder's, so they
#: always run at full float32 precision (a no-op on CPU). Encoders keep the
#: user's ``jax_default_matmul_precision``.
DOT_PRECISION = jax.lax.Precision.HIGHEST


def as_float(x: ArrayLike, name: str) -> jax.Array:
  """Returns ``x`` as a floating array, promoting 16-bit floats to float32.

  float16/bfloat16 inputs are computed in float32 (SPEC preamble); float32 and
  float64 pass through unchanged. Integer or boolean inputs are rejected.

  Args:
    x: array-like input.
    name: argument name used in the error message.

  Returns:
    ``x`` as a float32 or float64 ``jax.Array``.

  Raises:
    TypeError: if ``x`` is not a floating-point array.
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
      f"{name} must be a floating-point array, got dtype {x.dtype}."
    )
  if x.dtype in (jnp.float16, jnp.bfloat16):
    x = x.astype(jnp.float32)
  return x


def check_rank(
  x: jax.Array, rank: int | Sequence[int], name: str, shape_doc: str
) -> None:
  """Raises ``ValueError`` at trace time if ``x.ndim`` is not ``rank``.

  Args:
    x: array to check.
    rank: allowed rank, or a sequence of allowed ranks.
    name: argument name for the message.
    shape_doc: the expected shape in SPEC letters, e.g. ``"[M, V, B, E]"``.
  """
  ranks = (rank,) if isinstance(rank, int) else tuple(rank)
  if x.ndim not in ranks:
    allowed = " or ".join(map(str, ranks))
    raise ValueError(
      f"{name} must have shape {shape_doc} (rank {allowed}),"
      f" got shape {tuple(x.shape)}."
    )


def check_same_shape(
  a: jax.Array, b: jax.Array, name_a: str, name_b: str
) -> None:
  """Raises ``ValueError`` if ``a`` and ``b`` differ in shape."""
  if a.shape != b.shape:
    raise ValueError(
      f"{name_a} and {name_b} must have the same shape, got"
      f" {tuple(a.shape)} and {tuple(b.shape)}."
    )


def check_labels(
  labels: ArrayLike, num: int, name: str = "labels", shape_doc: str = "[B]"
) -> jax.Array:
  """``labels`` as an ``int32`` array of shape ``(num,)``, or a clear error.

  Args:
    labels: integer class labels.
    num: the expected length (the batch).
    name: argument name for the message.
    shape_doc: the expected shape in SPEC letters, e.g. ``"[B]"``.

  Returns:
    ``labels`` as ``int32``.

  Raises:
    ValueError: on a non-integer dtype or a shape other than ``(num,)``.
  """
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
      f"{name} must be an integer array {shape_doc}, got dtype {labels.dtype}."
    )
  if labels.shape != (num,):
    raise ValueError(
      f"{name} must have shape {shape_doc} = ({num},), got"
      f" {tuple(labels.shape)}."
    )
  return labels.astype(jnp.int32)


def lse(
  x: jax.Array, axis: int | Sequence[int] | None, axis_name: str | None = None
) -> jax.Array:
  """Log-sum-exp with ``keepdims=True``, optionally reduced across devices.

  An all ``-inf`` slice gives ``-inf`` (not NaN) in the forward pass. With
  ``axis_name`` set (inside ``shard_map``/``pmap``) the max and the sum are
  also reduced over that mapped axis, in the log domain.

  Args:
    x: input array.
    axis: reduced axis or axes (``None``: all).
    axis_name: mapped axis name to reduce across, or ``None``.

  Returns:
    ``log(sum(exp(x)))`` over ``axis`` (and ``axis_name``), keepdims.
  """
  m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  if axis_name is not None:
    m = jax.lax.pmax(m, axis_name)
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  s = jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True)
  if axis_name is not None:
    s = jax.lax.psum(s, axis_name)
  return jnp.log(s) + m
