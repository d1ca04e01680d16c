"""Token-major matrix products with backward passes shaped for XLA CPU.

A transformer multiplies token arrays ``x [..., N, D_in]`` by weights, and
its backward pass contracts over the token axis: the weight gradient is
``x^T @ g`` and, inside window attention, ``dk = dlogits^T @ q``. XLA CPU
hands products that contract the *leading* axis of an operand to Eigen,
which packs both operands and allocates its blocks on every call (batched
window products: one tiny matrix at a time), or first copies the operand into
a transposed layout *inside* the producing fusion, in an order that reads
the fusion's inputs across their rows: on the FOCAL MOD SWIN pair such a
product costs several times an ``A @ B`` of the same sizes
(``benchmarks/models.py``; the measured times are in
``benchmarks/results/README.md``).

On CPU the functions here transpose the narrower operand explicitly, between
two optimisation barriers (the first keeps the transpose a plain copy of a
materialised array, the second keeps XLA from folding it back into the
product), so that every backward product has the ``[M, K] @ [K, N]`` form
that XLA gives to its YNNPACK kernels. On other platforms (cuBLAS, TPU
matrix units take any operand order) they lower to the plain products of
JAX's own rules. Values equal those of JAX's rules to rounding.

``token_dot_general`` is a drop-in ``dot_general`` for
``flax.linen.Dense`` and :data:`TokenDense` the Dense that uses it
(parameters unchanged: ``kernel [D_in, D_out]`` and ``bias``);
:func:`window_logits` is the per-window ``q . k`` of window attention.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

__all__ = [
  "TokenDense",
  "key_grad_cpu",
  "key_grad_default",
  "materialized_transpose",
  "token_dot_general",
  "weight_grad_cpu",
  "weight_grad_default",
  "window_logits",
]


def materialized_transpose(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """``jnp.transpose(x, axes)`` that XLA may neither fuse nor fold away.

  The barrier before the transpose keeps it a copy of a materialised array
  (not a fusion that evaluates its producer in transposed order); the one
  after keeps XLA's transpose folding from turning a following product back
  into one that contracts a leading axis.
  """
  barrier = jax.lax.optimization_barrier
  return barrier(jnp.transpose(barrier(x), axes))


def _on_cpu(cpu_fn, default_fn, *args):
  """``cpu_fn(*args)`` on CPU, ``default_fn(*args)`` elsewhere."""
  return jax.lax.platform_dependent(*args, cpu=cpu_fn, default=default_fn)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _token_matmul(x: jax.Array, w: jax.Array, precision) -> jax.Array:
  return jnp.matmul(x, w, precision=precision)


def _token_matmul_fwd(x, w, precision):
  return _token_matmul(x, w, precision), (x, w)


def weight_grad_cpu(x2: jax.Array, g2: jax.Array, precision) -> jax.Array:
  """``x2^T @ g2`` (``[T, I]``, ``[T, O]`` -> ``[I, O]``) on CPU.

  The narrower operand is transposed explicitly (module docstring).
  """
  if x2.shape[1] <= g2.shape[1]:
    return jnp.matmul(
      materialized_transpose(x2, (1, 0)), g2, precision=precision
    )
  return jnp.matmul(
    materialized_transpose(g2, (1, 0)), x2, precision=precision
  ).T


def weight_grad_default(x2: jax.Array, g2: jax.Array, precision) -> jax.Array:
  """``x2^T @ g2`` as JAX's own rule writes it (XLA picks the layouts)."""
  return jax.lax.dot_general(x2, g2, (((0,), (0,)), ((), ())), precision)


def _token_matmul_bwd(precision, residuals, g):
  x, w = residuals
  x2 = x.reshape(-1, w.shape[0])
  g2 = g.reshape(-1, w.shape[1])
  dw = _on_cpu(
    lambda a, b: weight_grad_cpu(a, b, precision),
    lambda a, b: weight_grad_default(a, b, precision),
    x2,
    g2,
  )
  dx = jax.lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())), precision)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_token_matmul.defvjp(_token_matmul_fwd, _token_matmul_bwd)


def token_dot_general(
  lhs: jax.Array,
  rhs: jax.Array,
  dimension_numbers,
  precision=None,
  preferred_element_type: DTypeLike | None = None,
) -> jax.Array:
  """``flax.linen.Dense``'s product ``lhs [..., I] @ rhs [I, O]``.

  A ``dot_general`` with the signature Flax passes to
  ``nn.Dense(..., dot_general=token_dot_general)``; it accepts only Dense's
  dimension numbers (last axis of ``lhs`` with the first of a 2-D ``rhs``,
  no batch axes) and no ``preferred_element_type``. The forward product is
  ``jnp.matmul``; the backward is described in the module docstring.
  """
  (lhs_c, rhs_c), (lhs_b, rhs_b) = dimension_numbers
  if (
    rhs.ndim != 2
    or tuple(lhs_c) != (lhs.ndim - 1,)
    or tuple(rhs_c) != (0,)
    or tuple(lhs_b)
    or tuple(rhs_b)
  ):
    raise ValueError(
      "token_dot_general computes lhs[..., I] @ rhs[I, O] only (flax Dense); "
      f"got dimension_numbers={dimension_numbers} for shapes {lhs.shape}, "
      f"{rhs.shape}."
    )
  if preferred_element_type is not None:
    raise ValueError("token_dot_general takes no preferred_element_type.")
  return _token_matmul(lhs, rhs, precision)


#: ``flax.linen.Dense`` with :func:`token_dot_general`: same parameters and
#: values, a backward pass shaped for XLA CPU.
TokenDense = functools.partial(nn.Dense, dot_general=token_dot_general)


@jax.custom_vjp
def window_logits(q: jax.Array, k: jax.Array) -> jax.Array:
  """Per-window attention logits ``einsum("bwqhc,bwkhc->bwhqk", q, k)``.

  Args:
    q: ``[B, nW, N, heads, hd]`` queries (already scaled).
    k: ``[B, nW, N, heads, hd]`` keys.

  Returns:
    ``[B, nW, heads, N, N]`` logits (query, key). The backward pass computes
    ``dk`` from an explicitly transposed ``dlogits`` on CPU (module
    docstring).
  """
  return jnp.einsum("bwqhc,bwkhc->bwhqk", q, k)


def _window_logits_fwd(q, k):
  return window_logits(q, k), (q, k)


def key_grad_cpu(g: jax.Array, q: jax.Array) -> jax.Array:
  """``dk [B, nW, N, h, c]`` from ``dlogits [B, nW, h, Nq, Nk]``, ``q``."""
  g_t = materialized_transpose(g, (0, 1, 2, 4, 3))  # [B, nW, h, key, query]
  return jnp.einsum("bwhkq,bwqhc->bwkhc", g_t, q)


def key_grad_default(g: jax.Array, q: jax.Array) -> jax.Array:
  """``dk`` as the einsum's own rule writes it."""
  return jnp.einsum("bwhqk,bwqhc->bwkhc", g, q)


def _window_logits_bwd(residuals, g):
  q, k = residuals
  dq = jnp.einsum("bwhqk,bwkhc->bwqhc", g, k)
  dk = _on_cpu(key_grad_cpu, key_grad_default, g, q)
  return dq.astype(q.dtype), dk.astype(k.dtype)


window_logits.defvjp(_window_logits_fwd, _window_logits_bwd)
