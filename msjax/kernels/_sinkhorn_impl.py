"""Numerical core of :func:`msjax.kernels.sinkhorn.sinkhorn_knopp`.

Private to :mod:`msjax.kernels`. Two evaluations of the same SPEC §1
iteration on ``scores[..., B, K]`` (leading axes are independent problems,
handled natively by batched reductions, not ``vmap``):

* :func:`equipartition_log`: the log-domain definition, literally.
* the scaling (kernel-domain) fast path: ``L0 = scores / epsilon`` never
  changes up to additive row and column terms, so the iterate is
  ``exp(L0_ij - m_i) * w_i * v_j`` with ``m_i`` the row maximum. One
  ``exp`` pass materialises ``E = exp(L0 - m)`` (every row has maximum
  exactly 1), the iterations update only ``w[B]`` and ``v[K]`` with
  matrix-vector products, and the codes are ``E_ij v_j / r_i`` with
  ``r = E v`` of the last round.

Why the fast path is exact to float32 rounding, and when it is not: ``E``
has row maxima 1, so every row sum ``r_i >= min_j v_j >= 1 / (B K)``
never underflows; only a column sum ``c_j = sum_i w_i E_ij`` can be tiny
(a prototype all of whose entries lie far below their rows' maxima, or
rows whose initial weight ``exp(m_i - max m)`` underflows). Each such sum
carries an absolute error of at most ``B * K * tiny`` from flushed
products, so the fast path is accepted iff every column sum of every
round is ``>= tiny * 1e18`` (relative error < 1e-10 in float32) and
everything is finite; otherwise the log-domain path is taken
(``lax.cond``, evaluated inside the compiled graph, agreed across devices
when ``axis_name`` is set).
"""

import math

import jax
import jax.numpy as jnp

from msjax.kernels._util import lse

__all__ = ["equipartition", "equipartition_log", "equipartition_scaling"]

# Column sums below tiny * _MARGIN send the problem to the log domain.
_MARGIN = 1e18


def _global_batch(local_batch: int, axis_name: str | None) -> int:
  if axis_name is None:
    return local_batch
  return local_batch * jax.lax.axis_size(axis_name)


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def equipartition_log(scores: jax.Array, *, epsilon: float, num_iters: int,
                      axis_name: str | None = None) -> jax.Array:
  """SPEC §1 in the log domain, literally (the reference evaluation).

  Args:
    scores: ``[..., B, K]`` float32/float64 scores.
    epsilon: entropic temperature.
    num_iters: number of (column, row) rounds.
    axis_name: mapped axis over which ``B`` is split, or ``None``.

  Returns:
    ``[..., B, K]`` codes.
  """
  num_rows = _global_batch(scores.shape[-2], axis_name)
  log_b = math.log(num_rows)
  log_k = math.log(scores.shape[-1])
  logits = scores / jnp.asarray(epsilon, scores.dtype)
  logits = logits - lse(logits, axis=(-2, -1), axis_name=axis_name)
  for _ in range(num_iters):
    logits = logits - lse(logits, axis=-2, axis_name=axis_name) - log_k
    logits = logits - lse(logits, axis=-1) - log_b
  return jnp.exp(logits + log_b)


def equipartition_scaling(
  scores: jax.Array, *, epsilon: float, num_iters: int,
  axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The kernel-domain scalings of SPEC §1 (``num_iters >= 1``).

  Args:
    scores: ``[..., B, K]`` float32/float64 scores.
    epsilon: entropic temperature.
    num_iters: number of (column, row) rounds, >= 1.
    axis_name: mapped axis over which ``B`` is split, or ``None``.

  Returns:
    ``(kernel [..., B, K], col_scale [..., K], inv_row [..., B], ok [])``:
    codes are ``kernel * col_scale[..., None, :] * inv_row[..., :, None]``;
    ``ok`` says whether this evaluation is accurate (see module doc).
  """
  dtype = scores.dtype
  num_rows = _global_batch(scores.shape[-2], axis_name)
  num_cols = scores.shape[-1]
  inv_eps = jnp.asarray(1.0 / epsilon, dtype)
  row_max = jnp.max(scores, axis=-1) * inv_eps                  # [..., B]
  top = jnp.max(row_max, axis=-1, keepdims=True)                # [..., 1]
  if axis_name is not None:
    top = jax.lax.pmax(top, axis_name)
  kernel = jnp.exp(scores * inv_eps - row_max[..., None])       # [..., B, K]
  row_weight = jnp.exp(row_max - top)                           # [..., B]
  smallest = jnp.asarray(jnp.inf, dtype)
  inv_row = None
  col_scale = None
  for _ in range(num_iters):
    col_sum = _psum(jnp.einsum("...b,...bk->...k", row_weight, kernel),
                    axis_name)
    smallest = jnp.minimum(smallest, jnp.min(col_sum))
    col_scale = 1.0 / (num_cols * col_sum)
    row_sum = jnp.einsum("...bk,...k->...b", kernel, col_scale)
    inv_row = 1.0 / row_sum
    row_weight = inv_row / num_rows
  finite = jnp.all(jnp.isfinite(inv_row)) & jnp.all(jnp.isfinite(col_scale))
  ok = finite & (smallest >= jnp.finfo(dtype).tiny * _MARGIN)
  if axis_name is not None:
    ok = jax.lax.pmin(ok.astype(jnp.int32), axis_name) > 0
  return kernel, col_scale, inv_row, ok


def equipartition(scores: jax.Array, *, epsilon: float, num_iters: int,
                  axis_name: str | None = None) -> jax.Array:
  """SPEC §1 codes: fast scaling path, log-domain fallback inside the graph.

  Args:
    scores: ``[..., B, K]`` float32/float64 scores.
    epsilon: entropic temperature.
    num_iters: number of (column, row) rounds.
    axis_name: mapped axis over which ``B`` is split, or ``None``.

  Returns:
    ``[..., B, K]`` codes.
  """
  if num_iters == 0:
    return equipartition_log(scores, epsilon=epsilon, num_iters=0,
                             axis_name=axis_name)
  kernel, col_scale, inv_row, ok = equipartition_scaling(
    scores, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name)

  def fast(kernel, col_scale, inv_row, scores):
    del scores
    return kernel * col_scale[..., None, :] * inv_row[..., :, None]

  def slow(kernel, col_scale, inv_row, scores):
    del kernel, col_scale, inv_row
    return equipartition_log(scores, epsilon=epsilon, num_iters=num_iters,
                             axis_name=axis_name)

  return jax.lax.cond(ok, fast, slow, kernel, col_scale, inv_row, scores)
