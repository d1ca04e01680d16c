"""Entropic optimal transport by Sinkhorn iterations: msjax's one OT solver.

Both Sinkhorn problems of the SPEC run on the iterations of this module:

* :func:`entropic_ot` / :func:`batched_entropic_ot` (SPEC §3.4, used by
  Pro-FD): histograms ``a``, ``b``, a ground cost shared by every problem;
* :func:`equipartition` (SPEC §1, behind
  :func:`msjax.kernels.sinkhorn.sinkhorn_knopp`): SwAV's codes, the same
  iteration on the transposed problem with uniform marginals.

The solver. With ``L = -cost / eps`` (or ``scores / eps``) and scaled
potentials ``F = f / eps``, ``G = g / eps``, one round is::

  F = log a - lse_j(L_ij + G_j)        G = log b - lse_i(L_ij + F_i)

Two evaluations of the same rounds:

* kernel domain (the fast path): with ``E_ij = exp(L_ij - s_ij)`` for a
  row or column shift ``s`` that gives every row (column) the maximum 1,
  the rounds are ``u = a / (E v)``, ``v = b / (E^T u)``: two matrix
  products per round (matrix-matrix for a shared cost), no ``exp`` or
  ``log`` inside the loop. :func:`scaling_rounds`.
* log domain (the fallback): the rounds as written, with log-sum-exps.
  :func:`log_rounds`.

The one fallback rule (:func:`scaling_rounds`' ``ok``): ``E <= 1``, so a
product ``E x`` loses at most ``n * tiny * max(x)`` to products flushed
below the smallest normal float ``tiny`` (``n`` terms). The kernel domain
is accepted iff every denominator of every round is at least
``1e10 * n * tiny * max(1, max x)`` (relative error below ``1e-10``) and
``n * max x`` stays finite; otherwise the log domain is evaluated, chosen
inside the compiled graph (``lax.cond``; one flag for all the problems of a
call, agreed across devices when ``axis_name`` is set). For Pro-FD's costs
(``cost in [0, 2]``, ``eps >= 0.025``) the kernel domain is always taken.

Gradients (entropic OT only; equipartition codes are stopped): the
unrolled iterations of the evaluation that was taken, via a ``custom_vjp``
whose forward pass keeps the kernel domain's ``jax.vjp`` and whose backward
pass differentiates the log domain only when that was taken: exactly the
unrolled gradient, reverse mode only. The log-domain fallback of the
shared-cost solver works through the batch in chunks (its ``[N, C, C]``
temporaries, and the backward pass's residuals of every round, would
otherwise be reserved by XLA on every call, taken or not).
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._explicit import contraction_sharding, sharded_explicitly
from msjax.kernels._util import DOT_PRECISION, as_float, check_rank, lse

__all__ = [
  "OTOut",
  "Scalings",
  "batched_entropic_ot",
  "check_ot_hyper",
  "entropic_ot",
  "equipartition",
  "equipartition_log",
  "equipartition_potentials",
  "equipartition_scalings",
  "log_rounds",
  "scaling_rounds",
  "shared_cost_ot",
]

# Relative error allowed to flushed products in a kernel-domain sum.
_MARGIN = 1e10
# Up to this many rounds the loop is unrolled (fusion across rounds);
# beyond it a ``fori_loop`` keeps the graph small.
_MAX_UNROLL = 8
# Below this many classes the shared-cost kernel domain runs on [C, N]
# (:func:`_ot_kernel_domain`).
_PROBLEMS_MINOR_BELOW = 64
# Temporaries the log-domain fallback of the shared-cost solver may reserve
# (:func:`_fallback_chunk`).
_FALLBACK_BYTES = 1 << 20
# A problem whose row marginals are within this L1 distance of ``a`` after
# the last round counts as converged (OTT-JAX's default threshold).
_CONVERGED = 1e-3


class OTOut(NamedTuple):
  """Result of :func:`entropic_ot` / :func:`batched_entropic_ot` (SPEC §3.4).

  Leading ``[N]`` axes only for :func:`batched_entropic_ot`.

  Attributes:
    value: ``[N]`` transport cost ``sum_ij T_ij cost_ij``.
    T: ``[N, C, C]`` entropic transport plan.
    f: ``[N, C]`` final source potential.
    g: ``[N, C]`` final target potential.
    errors: ``[N]`` L1 distance of the plan's row sums to ``a`` after the
      last round (its column sums equal ``b`` by construction); gradient
      stopped.
    converged: ``[N]`` ``errors <= 1e-3``.
  """

  value: jax.Array
  T: jax.Array
  f: jax.Array
  g: jax.Array
  errors: jax.Array
  converged: jax.Array


def _repeat(body: Callable, init, num_iters: int, unroll: int = _MAX_UNROLL):
  """Applies ``body`` ``num_iters`` times, unrolled up to ``unroll`` rounds."""
  if num_iters <= unroll:
    for _ in range(num_iters):
      init = body(init)
    return init
  return jax.lax.fori_loop(0, num_iters, lambda _, x: body(x), init)


def _global(size: int, axis_name: str | None) -> int:
  return size if axis_name is None else size * jax.lax.axis_size(axis_name)


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)


# ------------------------------------------------------------ the rounds


class Scalings(NamedTuple):
  """Kernel-domain state after the last round of :func:`scaling_rounds`.

  Attributes:
    u: ``[..., n]`` row scalings ``a / row_den``.
    v: ``[..., m]`` column scalings ``b / col_den``.
    row_den: ``[..., n]`` the last ``E v`` (of the previous ``v``).
    col_den: ``[..., m]`` the last ``E^T u``.
    ok: ``[]`` whether the kernel domain was accurate (module doc).
  """

  u: jax.Array
  v: jax.Array
  row_den: jax.Array
  col_den: jax.Array
  ok: jax.Array


def scaling_rounds(
  row_sums: Callable[[jax.Array], jax.Array],
  col_sums: Callable[[jax.Array], jax.Array],
  a: ArrayLike,
  b: ArrayLike,
  v0: jax.Array,
  num_iters: int,
  *,
  num_rows: int,
  num_cols: int,
  axis_name: str | None = None,
  unroll: int = _MAX_UNROLL,
) -> Scalings:
  """Sinkhorn rounds ``u = a / (E v)``, ``v = b / (E^T u)`` from ``v0``.

  Args:
    row_sums: ``v [..., m] -> E v [..., n]`` for a kernel with entries in
      ``[0, 1]`` (reduced across ``axis_name`` where ``m`` is split).
    col_sums: ``u [..., n] -> E^T u [..., m]`` (likewise for ``n``).
    a: row marginals, broadcastable to ``[..., n]``.
    b: column marginals, broadcastable to ``[..., m]``.
    v0: ``[..., m]`` initial column scalings (non-negative).
    num_iters: number of rounds, >= 1.
    num_rows: ``n`` (global): terms of every ``E^T u`` sum.
    num_cols: ``m`` (global): terms of every ``E v`` sum.
    axis_name: mapped axis the ``ok`` flag is agreed over, or ``None``.
    unroll: rounds up to which the loop is unrolled.

  Returns:
    :class:`Scalings` of the last round.
  """
  sg = jax.lax.stop_gradient

  def round_(carry):
    v, _, _, _, row_min, col_min, u_max, v_max = carry
    row_den = row_sums(v)
    u = a / row_den
    col_den = col_sums(u)
    v = b / col_den
    return (
      v,
      u,
      row_den,
      col_den,
      jnp.minimum(row_min, sg(row_den)),
      jnp.minimum(col_min, sg(col_den)),
      jnp.maximum(u_max, sg(u)),
      jnp.maximum(v_max, sg(v)),
    )

  dtype = v0.dtype
  probe_u = jax.eval_shape(row_sums, v0)
  inf = jnp.asarray(jnp.inf, dtype)
  init = (
    v0,
    jnp.zeros(probe_u.shape, dtype),
    jnp.zeros(probe_u.shape, dtype),
    jnp.zeros_like(v0),
    jnp.full(probe_u.shape, inf),
    jnp.full_like(v0, inf),
    jnp.zeros(probe_u.shape, dtype),
    sg(v0),
  )
  v, u, row_den, col_den, row_min, col_min, u_max, v_max = _repeat(
    round_, init, num_iters, unroll
  )
  tiny = jnp.finfo(dtype).tiny
  big = jnp.finfo(dtype).max

  def accurate(den_min, x_max, terms):
    largest = jnp.maximum(jnp.max(x_max), 1.0)
    return (jnp.min(den_min) >= _MARGIN * tiny * terms * largest) & (
      largest <= big / terms
    )

  ok = accurate(row_min, v_max, num_cols) & accurate(col_min, u_max, num_rows)
  if axis_name is not None:
    ok = jax.lax.pmin(ok.astype(jnp.int32), axis_name) > 0
  return Scalings(u=u, v=v, row_den=row_den, col_den=col_den, ok=ok)


def log_rounds(
  row_lse: Callable[[jax.Array], jax.Array],
  col_lse: Callable[[jax.Array], jax.Array],
  log_a: ArrayLike,
  log_b: ArrayLike,
  g0: jax.Array,
  num_iters: int,
  *,
  unroll: int = _MAX_UNROLL,
) -> tuple[jax.Array, jax.Array]:
  """Log-domain rounds ``F = log a - row_lse(G)``, ``G = log b - col_lse(F)``.

  Args:
    row_lse: ``G [..., m] -> lse_j(L_ij + G_j) [..., n]``.
    col_lse: ``F [..., n] -> lse_i(L_ij + F_i) [..., m]``.
    log_a: log row marginals, broadcastable to ``[..., n]``.
    log_b: log column marginals, broadcastable to ``[..., m]``.
    g0: ``[..., m]`` initial column potential.
    num_iters: number of rounds, >= 1.
    unroll: rounds up to which the loop is unrolled.

  Returns:
    ``(F [..., n], G [..., m])`` after the last round.
  """

  def round_(pot_g):
    pot_f = log_a - row_lse(pot_g)
    return log_b - col_lse(pot_f)

  pot_g = _repeat(round_, g0, num_iters - 1, unroll)
  pot_f = log_a - row_lse(pot_g)
  return pot_f, log_b - col_lse(pot_f)


# ------------------------------------------------ entropic OT (SPEC §3.4)


def _ot_kernel_domain(log_a, log_b, cost, epsilon, num_iters):
  """``((F, G, value), ok)`` of the shared-cost problems, kernel domain.

  The rounds run on ``[C, N]`` (problems along the minor axis) when
  ``C < _PROBLEMS_MINOR_BELOW``: the elementwise steps then vectorise over
  the batch instead of over a handful of classes; for more classes the
  ``[N, C]`` layout is the faster one (benchmarks/results/README.md). The
  two agree to float rounding.
  """
  neg_cost = -cost / epsilon
  shift = jax.lax.stop_gradient(jnp.max(neg_cost, axis=-1))  # [C]
  kernel = jnp.exp(neg_cost - shift[:, None])  # [C, C], row maxima 1
  num = cost.shape[-1]
  minor = num < _PROBLEMS_MINOR_BELOW
  if minor:
    log_a, log_b = log_a.T, log_b.T  # [C, N]

    def row_sums(v):  # (E v_n)_i for every column n
      return jnp.matmul(kernel, v, precision=DOT_PRECISION)

    def col_sums(u):  # (E^T u_n)_j
      return jnp.matmul(kernel.T, u, precision=DOT_PRECISION)

  else:

    def row_sums(v):  # [N, C] -> [N, C]: (E v_n)_i
      return jnp.matmul(v, kernel.T, precision=DOT_PRECISION)

    def col_sums(u):  # (E^T u_n)_j
      return jnp.matmul(u, kernel, precision=DOT_PRECISION)

  out = scaling_rounds(
    row_sums,
    col_sums,
    jnp.exp(log_a),
    jnp.exp(log_b),
    jnp.ones_like(log_b),
    num_iters,
    num_rows=num,
    num_cols=num,
    unroll=num_iters,
  )
  # sum_ij u_i E_ij cost_ij v_j: one product with E * cost, no [N, C, C].
  weighted_kernel = kernel * cost
  if minor:
    pot_f = log_a - jnp.log(out.row_den) - shift[:, None]
    pot_g = log_b - jnp.log(out.col_den)
    weighted = jnp.matmul(weighted_kernel, out.v, precision=DOT_PRECISION)
    value = jnp.sum(out.u * weighted, axis=0)
    return (pot_f.T, pot_g.T, value), out.ok
  pot_f = log_a - jnp.log(out.row_den) - shift
  pot_g = log_b - jnp.log(out.col_den)
  weighted = jnp.matmul(out.v, weighted_kernel.T, precision=DOT_PRECISION)
  value = jnp.sum(out.u * weighted, axis=-1)
  return (pot_f, pot_g, value), out.ok


def _ot_log_domain(log_a, log_b, cost, epsilon, num_iters):
  """``(F, G, value)`` of the shared-cost problems, log domain."""
  neg_cost = -cost / epsilon  # [C, C]

  def row_lse(pot_g):  # [N, C] -> [N, C]
    return lse(pot_g[..., None, :] + neg_cost, axis=-1)[..., 0]

  def col_lse(pot_f):
    return lse(pot_f[..., :, None] + neg_cost, axis=-2)[..., 0, :]

  pot_f, pot_g = log_rounds(
    row_lse,
    col_lse,
    log_a,
    log_b,
    jnp.zeros_like(log_b),
    num_iters,
    unroll=1,
  )
  plan = jnp.exp(pot_f[..., :, None] + pot_g[..., None, :] + neg_cost)
  return pot_f, pot_g, jnp.sum(plan * cost, axis=(-2, -1))


def _fallback_chunk(
  num_problems: int, num: int, num_iters: int, dtype, backward: bool
) -> int:
  """Problems per chunk of the log-domain fallback.

  XLA reserves the temporaries of both branches of a ``lax.cond`` on every
  call, taken or not: the whole batch's log domain (``[N, C, C]`` per
  round, and every round's residuals in the backward pass) would make each
  call allocate -- and fault in -- hundreds of MB at ``N = 256, C = 100``.
  Solved in chunks, the fallback's temporaries stay near
  :data:`_FALLBACK_BYTES`. (Problems split over Explicit mesh axes are
  solved in one piece: each device holds only its share.)
  """
  arrays = 4 * num_iters + 4 if backward else 4
  per_problem = arrays * num * num * jnp.dtype(dtype).itemsize
  return max(1, min(num_problems, _FALLBACK_BYTES // per_problem))


def _over_chunks(body, carry, arrays, chunk: int, fill):
  """``lax.scan`` of ``body`` over ``chunk``-row slices of ``arrays``.

  Args:
    body: ``(carry, [chunk, ...] arrays) -> (carry, [chunk, ...] outputs)``.
    carry: initial carry.
    arrays: ``[N, ...]`` arrays, scanned together.
    chunk: rows per step; the last step is padded with rows of ``fill``.
    fill: one padding value per array (scalars).

  Returns:
    ``(carry, [N, ...] outputs)``.
  """
  num = arrays[0].shape[0]
  steps = -(-num // chunk)
  pad = steps * chunk - num

  def split(x, value):
    x = jnp.concatenate([x, jnp.full((pad, *x.shape[1:]), value, x.dtype)])
    return x.reshape(steps, chunk, *x.shape[1:])

  carry, outs = jax.lax.scan(
    body, carry, tuple(split(x, v) for x, v in zip(arrays, fill, strict=True))
  )
  return carry, jax.tree.map(
    lambda y: y.reshape(steps * chunk, *y.shape[2:])[:num], outs
  )


def _ot_log_domain_chunked(log_a, log_b, cost, epsilon, num_iters):
  """:func:`_ot_log_domain` of ``[N, C]`` problems, a chunk at a time."""
  if sharded_explicitly(log_a, 0):
    return _ot_log_domain(log_a, log_b, cost, epsilon, num_iters)
  num_problems, num = log_a.shape
  chunk = _fallback_chunk(num_problems, num, num_iters, cost.dtype, False)
  uniform = -math.log(num)

  def body(carry, xs):
    return carry, _ot_log_domain(*xs, cost, epsilon, num_iters)

  return _over_chunks(body, (), (log_a, log_b), chunk, (uniform, uniform))[1]


def _ot_log_domain_vjp_chunked(log_a, log_b, cost, cts, epsilon, num_iters):
  """Cotangents of :func:`_ot_log_domain` for ``[N, C]`` problems, chunked.

  The cost's cotangent is summed over chunks in the scan's carry.
  """

  def cotangents(log_a, log_b, cts):
    _, pullback = jax.vjp(
      lambda *x: _ot_log_domain(*x, epsilon, num_iters), log_a, log_b, cost
    )
    return pullback(cts)

  if sharded_explicitly(log_a, 0):
    return cotangents(log_a, log_b, cts)
  num_problems, num = log_a.shape
  chunk = _fallback_chunk(num_problems, num, num_iters, cost.dtype, True)
  uniform = -math.log(num)

  def body(cost_ct, xs):
    log_a, log_b, *cts = xs
    d_a, d_b, d_cost = cotangents(log_a, log_b, tuple(cts))
    return cost_ct + d_cost, (d_a, d_b)

  # Padded problems get zero cotangents: they add nothing to any gradient.
  cost_ct, (d_a, d_b) = _over_chunks(
    body,
    jnp.zeros_like(cost),
    (log_a, log_b, *cts),
    chunk,
    (uniform, uniform, 0.0, 0.0, 0.0),
  )
  return d_a, d_b, cost_ct


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _ot_solve(log_a, log_b, cost, epsilon, num_iters, cost_grad):
  """``(F, G, value)``: kernel domain, or log domain where it is inexact."""
  del cost_grad
  return _ot_solve_fwd(log_a, log_b, cost, epsilon, num_iters, False)[0]


def _ot_solve_fwd(log_a, log_b, cost, epsilon, num_iters, cost_grad):
  if cost_grad:
    fast, pullback, ok = jax.vjp(
      lambda *x: _ot_kernel_domain(*x, epsilon, num_iters),
      log_a,
      log_b,
      cost,
      has_aux=True,
    )
  else:
    fast, pullback, ok = jax.vjp(
      lambda *x: _ot_kernel_domain(*x, cost, epsilon, num_iters),
      log_a,
      log_b,
      has_aux=True,
    )
  out = jax.lax.cond(
    ok,
    lambda: fast,
    lambda: _ot_log_domain_chunked(log_a, log_b, cost, epsilon, num_iters),
  )
  return out, (ok, pullback, log_a, log_b, cost)


def _ot_solve_bwd(epsilon, num_iters, cost_grad, residuals, cotangents):
  ok, pullback, log_a, log_b, cost = residuals

  # The kernel domain's pullback runs outside the cond, which only selects:
  # inside a branch its rounds' residuals become the branch's operands and
  # it runs as a separate, slower computation (benchmarks/results/README.md).
  grads = pullback(cotangents)
  grads = grads if cost_grad else (*grads, jnp.zeros_like(cost))

  def slow(cts):
    d_a, d_b, d_cost = _ot_log_domain_vjp_chunked(
      log_a, log_b, cost, cts, epsilon, num_iters
    )
    return d_a, d_b, d_cost if cost_grad else jnp.zeros_like(cost)

  return jax.lax.cond(ok, lambda _: grads, slow, cotangents)


_ot_solve.defvjp(_ot_solve_fwd, _ot_solve_bwd)


def shared_cost_ot(
  log_a: jax.Array,
  log_b: jax.Array,
  cost: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
  cost_grad: bool = True,
) -> OTOut:
  """``N`` entropic OT problems sharing one cost, from log-histograms.

  The solver behind :func:`batched_entropic_ot`, :func:`entropic_ot` and
  Pro-FD (which passes ``log_softmax`` values: no ``log(0)``).

  Args:
    log_a: ``[N, C]`` log source histograms.
    log_b: ``[N, C]`` log target histograms.
    cost: ``[C, C]`` ground cost.
    epsilon: absolute entropic regularisation (> 0).
    num_iters: number of (f, g) rounds (>= 1).
    cost_grad: whether gradients reach ``cost`` (``False`` skips their
      computation; the cost's cotangent is then zero).

  Returns:
    :class:`OTOut` with ``[N]``-batched fields.
  """
  pot_f, pot_g, value = _ot_solve(
    log_a, log_b, cost, float(epsilon), int(num_iters), bool(cost_grad)
  )
  neg_cost = -cost / epsilon
  plan = jnp.exp(pot_f[..., :, None] + pot_g[..., None, :] + neg_cost)
  # Row sums of the plan in the log domain (any cost), against a.
  sg = jax.lax.stop_gradient
  row_log = (
    sg(pot_f) + lse(sg(pot_g)[..., None, :] + sg(neg_cost), axis=-1)[..., 0]
  )
  errors = jnp.sum(jnp.abs(jnp.exp(row_log) - jnp.exp(sg(log_a))), axis=-1)
  return OTOut(
    value=value,
    T=plan,
    f=epsilon * pot_f,
    g=epsilon * pot_g,
    errors=errors,
    converged=errors <= _CONVERGED,
  )


def check_ot_hyper(epsilon: float, num_iters: int) -> None:
  """Raises ``ValueError`` unless ``epsilon > 0`` and ``num_iters >= 1``."""
  if not float(epsilon) > 0:
    raise ValueError(f"epsilon must be > 0, got {epsilon}.")
  if int(num_iters) != num_iters or num_iters < 1:
    raise ValueError(f"num_iters must be an integer >= 1, got {num_iters}.")


def _ot_inputs(a, b, cost, hist_shape: str):
  a = as_float(a, "a")
  b = as_float(b, "b")
  cost = as_float(cost, "cost")
  rank = hist_shape.count(",") + 1
  check_rank(a, rank, "a", hist_shape)
  check_rank(b, rank, "b", hist_shape)
  check_rank(cost, 2, "cost", "[C, C]")
  num = a.shape[-1]
  if b.shape != a.shape or cost.shape != (num, num):
    raise ValueError(
      f"a {hist_shape}, b {hist_shape} and cost [C, C] must agree, got"
      f" shapes a {tuple(a.shape)}, b {tuple(b.shape)}, cost"
      f" {tuple(cost.shape)}."
    )
  dtype = jnp.result_type(a, b, cost)
  return a.astype(dtype), b.astype(dtype), cost.astype(dtype)


def entropic_ot(
  a: ArrayLike,
  b: ArrayLike,
  cost: ArrayLike,
  *,
  epsilon: float = 0.1,
  num_iters: int = 20,
) -> OTOut:
  """Entropic OT between histograms ``a`` and ``b`` (SPEC §3.4).

  Log-domain Sinkhorn from zero potentials, alternating::

    f_i = eps * log a_i - eps * lse_j((g_j - cost_ij) / eps)
    g_j = eps * log b_j - eps * lse_i((f_i - cost_ij) / eps)

  for ``num_iters`` rounds; plan ``T_ij = exp((f_i + g_j - cost_ij) / eps)``
  and value ``sum_ij T_ij cost_ij``. Evaluated by this module's solver
  (kernel domain, log domain where that is inexact); gradients are those
  of the unrolled iterations (through ``a``, ``b`` and ``cost``). One
  problem; :func:`batched_entropic_ot` solves many with one shared cost.

  Args:
    a: ``[C]`` source histogram (positive, summing to 1).
    b: ``[C]`` target histogram (positive, summing to 1).
    cost: ``[C, C]`` ground cost.
    epsilon: absolute entropic regularisation (> 0).
    num_iters: number of (f, g) update rounds (>= 1).

  Returns:
    :class:`OTOut` ``(value [], T [C, C], f [C], g [C], errors [],
    converged [])``.

  Raises:
    ValueError: on shapes other than ``[C]``, ``[C]``, ``[C, C]``, on
      ``epsilon <= 0`` or ``num_iters < 1``.

  Example:
    >>> out = entropic_ot(jnp.full(3, 1 / 3), jnp.full(3, 1 / 3),
    ...                   1.0 - jnp.eye(3))
    >>> bool(out.value < 0.1), bool(out.converged)
    (True, True)

  References:
    Cuturi, "Sinkhorn Distances", NeurIPS 2013; Peyre & Cuturi,
    "Computational Optimal Transport", 2019, §4.4 (log-domain updates).
  """
  a, b, cost = _ot_inputs(a, b, cost, "[C]")
  check_ot_hyper(epsilon, num_iters)
  out = shared_cost_ot(
    jnp.log(a)[None],
    jnp.log(b)[None],
    cost,
    epsilon=epsilon,
    num_iters=num_iters,
  )
  return OTOut(*(field[0] for field in out))


def batched_entropic_ot(
  a: ArrayLike,
  b: ArrayLike,
  cost: ArrayLike,
  *,
  epsilon: float = 0.1,
  num_iters: int = 20,
) -> OTOut:
  """``N`` entropic OT problems with a shared cost (SPEC §3.4), batched.

  Same result as ``jax.vmap(entropic_ot, in_axes=(0, 0, None))(a, b, cost)``
  (the same rounds and unrolled gradients), with the shared kernel's
  products as ``[N, C] x [C, C]`` matrix products.

  Args:
    a: ``[N, C]``, one source histogram per row.
    b: ``[N, C]``, one target histogram per row.
    cost: ``[C, C]``, shared by all ``N`` problems.
    epsilon: as for :func:`entropic_ot`.
    num_iters: as for :func:`entropic_ot`.

  Returns:
    :class:`OTOut`, every field with a leading ``[N]``.

  Raises:
    ValueError: as :func:`entropic_ot`, for ``[N, C]`` histograms.

  Example:
    >>> u = jnp.full((2, 3), 1 / 3)
    >>> batched_entropic_ot(u, u, 1.0 - jnp.eye(3)).value.shape
    (2,)
  """
  a, b, cost = _ot_inputs(a, b, cost, "[N, C]")
  check_ot_hyper(epsilon, num_iters)
  return shared_cost_ot(
    jnp.log(a), jnp.log(b), cost, epsilon=epsilon, num_iters=num_iters
  )


# ------------------------------------------- equipartition (SPEC §1)


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
  num_rows = _global(scores.shape[-2], axis_name)
  log_b = math.log(num_rows)
  log_k = math.log(scores.shape[-1])
  logits = scores / jnp.asarray(epsilon, scores.dtype)
  logits = logits - lse(logits, axis=(-2, -1), axis_name=axis_name)

  def round_(logits):
    logits = logits - lse(logits, axis=-2, axis_name=axis_name) - log_k
    return logits - lse(logits, axis=-1) - log_b

  return jnp.exp(_repeat(round_, logits, num_iters) + log_b)


def equipartition_scalings(
  scores: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
  axis_name: str | None = None,
) -> tuple[jax.Array, Scalings]:
  """Kernel-domain rounds of SPEC §1 (``num_iters >= 1``).

  SPEC §1 is the OT problem with kernel ``exp(scores^T / epsilon)``
  (prototypes as rows), marginals ``1 / K`` and ``1 / B``, starting from
  the prototypes' potential: :func:`scaling_rounds` with the transposed
  products. ``E = exp(scores / epsilon - m)`` with ``m`` the row maxima
  (every sample's row has maximum 1); the initial sample scalings
  ``exp(m - max m)`` carry the shift.

  Args:
    scores: ``[..., B, K]`` float32/float64 scores.
    epsilon: entropic temperature.
    num_iters: number of (column, row) rounds, >= 1.
    axis_name: mapped axis over which ``B`` is split, or ``None``.

  Returns:
    ``(E [..., B, K], Scalings)`` with ``u`` the ``[..., K]`` prototype
    scalings and ``col_den`` the ``[..., B]`` row sums ``E u``: codes are
    ``E * u[..., None, :] / col_den[..., :, None]``.
  """
  dtype = scores.dtype
  num_rows = _global(scores.shape[-2], axis_name)
  num_cols = scores.shape[-1]
  inv_eps = jnp.asarray(1.0 / epsilon, dtype)
  row_max = jnp.max(scores, axis=-1) * inv_eps  # [..., B]
  top = jnp.max(row_max, axis=-1, keepdims=True)  # [..., 1]
  if axis_name is not None:
    top = jax.lax.pmax(top, axis_name)
  kernel = jnp.exp(scores * inv_eps - row_max[..., None])  # [..., B, K]
  batch_out = contraction_sharding(
    kernel, tuple(range(kernel.ndim - 2)) + (kernel.ndim - 1,)
  )

  def sample_sums(w):  # [..., B] -> [..., K]: sum_b E_bk w_b
    return _psum(
      jnp.einsum(
        "...b,...bk->...k", w, kernel, precision=DOT_PRECISION, **batch_out
      ),
      axis_name,
    )

  def proto_sums(u):  # [..., K] -> [..., B]: sum_k E_bk u_k
    return jnp.einsum("...bk,...k->...b", kernel, u, precision=DOT_PRECISION)

  out = scaling_rounds(
    sample_sums,
    proto_sums,
    1.0 / num_cols,
    1.0 / num_rows,
    jnp.exp(row_max - top),
    num_iters,
    num_rows=num_cols,
    num_cols=num_rows,
    axis_name=axis_name,
  )
  return kernel, out


def equipartition_potentials(
  scores: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
  axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Log-domain rounds of SPEC §1, carried as potentials (the fallback).

  :func:`log_rounds` on the transposed problem; no ``[B, K]`` matrix is
  materialised (every ``lse`` re-reads ``scores``, fused). The codes are
  the last row step's softmax, returned as its max and sum so that they are
  normalised by a division (rows sum to 1 to float rounding).

  Args:
    scores: ``[..., B, K]`` float32/float64 scores.
    epsilon: entropic temperature.
    num_iters: number of (column, row) rounds, >= 1.
    axis_name: mapped axis over which ``B`` is split, or ``None``.

  Returns:
    ``(F [..., 1, K], m [..., B, 1], s [..., B, 1])`` with
    ``codes = exp(scores / epsilon + F - m) / s``.
  """
  num_rows = _global(scores.shape[-2], axis_name)
  logits = scores / jnp.asarray(epsilon, scores.dtype)

  def sample_lse(pot_g):  # [..., B] -> [..., K]
    return lse(logits + pot_g[..., :, None], axis=-2, axis_name=axis_name)[
      ..., 0, :
    ]

  def proto_lse(pot_f):  # [..., K] -> [..., B]
    return lse(logits + pot_f[..., None, :], axis=-1)[..., 0]

  pot_f, _ = log_rounds(
    sample_lse,
    proto_lse,
    -math.log(scores.shape[-1]),
    -math.log(num_rows),
    jnp.zeros(scores.shape[:-1], scores.dtype),
    num_iters,
  )
  shifted = logits + pot_f[..., None, :]
  row_max = jax.lax.stop_gradient(jnp.max(shifted, axis=-1, keepdims=True))
  row_sum = jnp.sum(jnp.exp(shifted - row_max), axis=-1, keepdims=True)
  return pot_f[..., None, :], row_max, row_sum


def equipartition(
  scores: jax.Array,
  *,
  epsilon: float,
  num_iters: int,
  axis_name: str | None = None,
) -> jax.Array:
  """SPEC §1 codes: kernel domain, log-domain fallback inside the graph.

  The fallback (``lax.cond``) returns only log-domain potentials (vectors);
  one final elementwise pass selects between the scaled kernel and
  ``exp(scores / epsilon + F - m) / s``, so the kernel matrix's buffer is
  overwritten in place by the codes: one fresh ``[B, K]`` buffer per call.

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
  kernel, out = equipartition_scalings(
    scores, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name
  )
  proto_scale, inv_row = out.u, 1.0 / out.col_den

  def fast(scores, proto_scale, inv_row):
    del scores  # zeros shaped (and, under Explicit meshes, sharded) alike
    zero_row = jnp.zeros_like(inv_row)[..., None]
    return jnp.zeros_like(proto_scale)[..., None, :], zero_row, zero_row + 1

  def slow(scores, proto_scale, inv_row):
    del proto_scale, inv_row
    return equipartition_potentials(
      scores, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name
    )

  pot_f, row_max, row_sum = jax.lax.cond(
    out.ok, fast, slow, scores, proto_scale, inv_row
  )
  scaled = kernel * proto_scale[..., None, :] * inv_row[..., :, None]
  logits = scores / jnp.asarray(epsilon, scores.dtype) + pot_f - row_max
  return jnp.where(
    out.ok, scaled, jnp.exp(jnp.where(out.ok, 0.0, logits)) / row_sum
  )
