"""Numerical core of :func:`msjax.kernels.sinkhorn.sinkhorn_knopp`.

Private to :mod:`msjax.kernels`. Evaluations of the same SPEC §1
iteration on ``scores[..., B, K]`` (leading axes are independent problems,
handled natively by batched reductions, not ``vmap``, so one ``lax.cond``
serves them all):

* :func:`equipartition_log`: the log-domain definition, literally (the
  reference; used for ``num_iters == 0``).
* :func:`log_potentials`: the same in the log domain with only row and
  column potentials carried (the fallback).
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
when ``axis_name`` is set; one flag for all leading-axis problems).

Accuracy of the fallback in float32 is that of float32 logits: about
``|scores / epsilon| * 2**-24`` relative per entry (1e-5 at 100, 1e-4 at
1000), rows summing to 1 to rounding.
"""

import math

import jax
import jax.numpy as jnp

from msjax.kernels._util import DOT_PRECISION, lse

__all__ = [
  "contraction_sharding",
  "equipartition",
  "equipartition_log",
  "equipartition_scaling",
  "log_potentials",
]

# Column sums below tiny * _MARGIN send the problem to the log domain.
_MARGIN = 1e18
# Up to this many rounds the loop is unrolled (fusion across rounds);
# beyond it a `fori_loop` keeps the graph small.
_MAX_UNROLL = 8


def _repeat(body, init, num_iters: int):
  """Applies ``body`` ``num_iters`` times, unrolled when the count is small."""
  if num_iters <= _MAX_UNROLL:
    for _ in range(num_iters):
      init = body(init)
    return init
  return jax.lax.fori_loop(0, num_iters, lambda _, x: body(x), init)


def contraction_sharding(x: jax.Array, keep: tuple[int | None, ...]) -> dict:
  """``out_sharding`` for a contraction of ``x`` under Explicit sharding.

  With an Explicit mesh axis on a contracted dimension, JAX asks for the
  output sharding of ``einsum``/``dot_general``; the result of a
  batch contraction is the partial sums reduced over devices, so it keeps
  only the kept dimensions' specs. Returns ``{}`` outside Explicit meshes.

  Args:
    x: the operand whose dimensions are contracted or kept.
    keep: for every output dimension, the ``x`` dimension whose sharding
      it keeps, or ``None`` for an unsharded output dimension.

  Returns:
    ``{"out_sharding": NamedSharding}`` or ``{}``.
  """
  sharding = getattr(jax.typeof(x), "sharding", None)
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or not getattr(mesh, "axis_names", ()):
    return {}
  explicit = {
    name
    for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
    if kind == jax.sharding.AxisType.Explicit
  }
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))

  def names(entry):
    if entry is None:
      return set()
    return set(entry) if isinstance(entry, tuple) else {entry}

  contracted = set(range(x.ndim)) - set(keep)
  if not any(names(spec[axis]) & explicit for axis in contracted):
    return {}
  return {
    "out_sharding": jax.sharding.NamedSharding(
      mesh,
      jax.sharding.PartitionSpec(
        *(None if axis is None else spec[axis] for axis in keep)
      ),
    )
  }


def _global_batch(local_batch: int, axis_name: str | None) -> int:
  if axis_name is None:
    return local_batch
  return local_batch * jax.lax.axis_size(axis_name)


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def equipartition_log(
  scores: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
  axis_name: str | None = None,
) -> jax.Array:
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

  def round_(logits):
    logits = logits - lse(logits, axis=-2, axis_name=axis_name) - log_k
    return logits - lse(logits, axis=-1) - log_b

  return jnp.exp(_repeat(round_, logits, num_iters) + log_b)


def equipartition_scaling(
  scores: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
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
  row_max = jnp.max(scores, axis=-1) * inv_eps  # [..., B]
  top = jnp.max(row_max, axis=-1, keepdims=True)  # [..., 1]
  if axis_name is not None:
    top = jax.lax.pmax(top, axis_name)
  kernel = jnp.exp(scores * inv_eps - row_max[..., None])  # [..., B, K]
  row_weight = jnp.exp(row_max - top)  # [..., B]
  col_out = contraction_sharding(
    kernel, tuple(range(kernel.ndim - 2)) + (kernel.ndim - 1,)
  )

  def round_(carry):
    row_weight, _, _, smallest = carry
    col_sum = _psum(
      jnp.einsum(
        "...b,...bk->...k",
        row_weight,
        kernel,
        precision=DOT_PRECISION,
        **col_out,
      ),
      axis_name,
    )
    smallest = jnp.minimum(smallest, jnp.min(col_sum))
    col_scale = 1.0 / (num_cols * col_sum)
    inv_row = 1.0 / jnp.einsum(
      "...bk,...k->...b", kernel, col_scale, precision=DOT_PRECISION
    )
    return inv_row / num_rows, col_scale, inv_row, smallest

  init = (
    row_weight,
    jnp.zeros(scores.shape[:-2] + (num_cols,), dtype),
    row_weight,
    jnp.asarray(jnp.inf, dtype),
  )
  _, col_scale, inv_row, smallest = _repeat(round_, init, num_iters)
  finite = jnp.all(jnp.isfinite(inv_row)) & jnp.all(jnp.isfinite(col_scale))
  ok = finite & (smallest >= jnp.finfo(dtype).tiny * _MARGIN)
  if axis_name is not None:
    ok = jax.lax.pmin(ok.astype(jnp.int32), axis_name) > 0
  return kernel, col_scale, inv_row, ok


def log_potentials(
  scores: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
  axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """SPEC §1 in the log domain, carried as row and column potentials.

  The iterate of SPEC §1 is ``L_ij = scores_ij / epsilon + a_i + b_j``;
  each normalisation recomputes one potential from the other (a column
  step sets ``b = -lse_b(scores / epsilon + a) - log K``, a row step
  ``a = -lse_k(scores / epsilon + b) - log B``), so no ``[B, K]`` matrix
  is materialised (every ``lse`` re-reads ``scores``, fused). The last row
  step is returned as the max and the sum of its ``lse`` so that the codes
  are normalised by a division (rows sum to 1 to float rounding).

  Args:
    scores: ``[..., B, K]`` float32/float64 scores.
    epsilon: entropic temperature.
    num_iters: number of (column, row) rounds, >= 1.
    axis_name: mapped axis over which ``B`` is split, or ``None``.

  Returns:
    ``(b [..., 1, K], m [..., B, 1], s [..., B, 1])`` with
    ``codes = exp(scores / epsilon + b - m) / s``.
  """
  num_rows = _global_batch(scores.shape[-2], axis_name)
  log_b = math.log(num_rows)
  log_k = math.log(scores.shape[-1])
  logits = scores / jnp.asarray(epsilon, scores.dtype)
  row = -lse(logits, axis=(-2, -1), axis_name=axis_name)
  row = jnp.broadcast_to(row, scores.shape[:-1] + (1,))

  def col_step(row):
    return -lse(logits + row, axis=-2, axis_name=axis_name) - log_k

  def round_(row):
    return -lse(logits + col_step(row), axis=-1) - log_b

  col = col_step(_repeat(round_, row, num_iters - 1))
  shifted = logits + col
  row_max = jax.lax.stop_gradient(jnp.max(shifted, axis=-1, keepdims=True))
  row_sum = jnp.sum(jnp.exp(shifted - row_max), axis=-1, keepdims=True)
  return col, row_max, row_sum


def equipartition(
  scores: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
  axis_name: str | None = None,
) -> jax.Array:
  """SPEC §1 codes: fast scaling path, log-domain fallback inside the graph.

  The fallback (``lax.cond``) returns only log-domain potentials (vectors);
  one final elementwise pass selects between the scaled kernel and
  ``exp(scores / epsilon + b - m) / s``, so the kernel matrix's buffer is
  overwritten in place by the codes: one fresh ``[B, K]`` buffer per call
  (on CPU each fresh buffer over glibc's mmap threshold, 32 MiB at most,
  costs a page fault per 4 KiB page; a ``cond`` returning the matrix
  would cost a second one).

  Args:
    scores: ``[..., B, K]`` float32/float64 scores.
    epsilon: entropic temperature.
    num_iters: number of (column, row) rounds.
    axis_name: mapped axis over which ``B`` is split, or ``None``.

  Returns:
    ``[..., B, K]`` codes.
  """
  if num_iters == 0:
    return equipartition_log(
      scores, epsilon=epsilon, num_iters=0, axis_name=axis_name
    )
  kernel, col_scale, inv_row, ok = equipartition_scaling(
    scores, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name
  )

  def fast(scores, col_scale, inv_row):
    del scores  # zeros shaped (and, under Explicit meshes, sharded) alike
    zero_row = jnp.zeros_like(inv_row)[..., None]
    return jnp.zeros_like(col_scale)[..., None, :], zero_row, zero_row + 1

  def slow(scores, col_scale, inv_row):
    del col_scale, inv_row
    return log_potentials(
      scores, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name
    )

  col, row_max, row_sum = jax.lax.cond(
    ok, fast, slow, scores, col_scale, inv_row
  )
  scaled = kernel * col_scale[..., None, :] * inv_row[..., :, None]
  logits = scores / jnp.asarray(epsilon, scores.dtype) + col - row_max
  return jnp.where(ok, scaled, jnp.exp(jnp.where(ok, 0.0, logits)) / row_sum)
