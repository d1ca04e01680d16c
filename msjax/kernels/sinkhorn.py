"""Sinkhorn-Knopp equipartition codes and entropic optimal transport.

* :func:`sinkhorn_knopp` (SPEC §1): SwAV's equipartition codes, exactly the
  log-domain iteration of the SPEC, computed by a fast stabilised
  kernel-domain path with an in-graph log-domain fallback.
* :func:`entropic_ot` (SPEC §3.4): one entropic OT problem between two
  histograms, log-domain Sinkhorn from zero potentials, differentiated by
  unrolling a fixed number of iterations.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._sinkhorn_impl import equipartition
from msjax.kernels._util import as_float, check_rank, lse

__all__ = ["OTOut", "entropic_ot", "sinkhorn_knopp"]


class OTOut(NamedTuple):
  """Result of :func:`entropic_ot` (SPEC §3.4).

  Attributes:
    value: ``[]`` transport cost ``sum_ij T_ij cost_ij``.
    T: ``[C, C]`` entropic transport plan.
    f: ``[C]`` final source potential.
    g: ``[C]`` final target potential.
  """

  value: jax.Array
  T: jax.Array
  f: jax.Array
  g: jax.Array


def sinkhorn_knopp(
  scores: ArrayLike,
  *,
  epsilon: float = 0.05,
  num_iters: int = 3,
  axis_name: str | None = None,
) -> jax.Array:
  """Equipartition codes of B samples over K prototypes (SPEC §1).

  Computes, in exact arithmetic, SwAV's ``distributed_sinkhorn`` in the log
  domain::

    L = scores / epsilon;  L -= lse(L)                 # all B*K entries
    repeat num_iters:
      L -= lse_b(L)[None, :] + log K                   # columns sum to 1/K
      L -= lse_k(L)[:, None] + log B                   # rows sum to 1/B
    codes = exp(L + log B)                             # rows sum to 1

  Implementation: ``L`` stays a fixed matrix ``exp(L0)`` times per-row and
  per-column scalings, so the iterations only update two scaling vectors
  with matrix-vector products (one stabilised ``exp`` pass, no ``[B, K]``
  temporaries per iteration). When the scalings would leave the range
  float32 represents exactly (``scores / epsilon`` spans more than ~60
  nats with badly balanced marginals), a log-domain evaluation of the
  same iteration is selected inside the graph (``lax.cond``), so the
  result is finite for every finite input.

  Args:
    scores: ``[..., B, K]`` scores, any float dtype (16-bit floats are
      computed in float32). Leading axes are independent problems.
    epsilon: entropic temperature (> 0).
    num_iters: number of (column, row) normalisation rounds (>= 0).
    axis_name: mapped axis name when ``B`` is split across devices under
      ``shard_map``/``pmap``: column and total sums are reduced across it
      and ``B`` is the global batch. Not needed under sharded ``jit``.

  Returns:
    ``[..., B, K]`` codes (float32 for 16-bit inputs), rows summing to 1,
    columns summing to ``B / K`` at convergence, gradient stopped.

  Raises:
    ValueError: if ``scores`` has rank < 2, ``epsilon <= 0`` or
      ``num_iters < 0``.

  Example:
    >>> codes = sinkhorn_knopp(jnp.zeros((4, 2)))
    >>> codes.tolist()
    [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]

  References:
    Caron et al., "Unsupervised Learning of Visual Features by Contrasting
    Cluster Assignments" (SwAV), NeurIPS 2020.
  """
  scores = as_float(scores, "scores")
  check_rank(scores, tuple(range(2, 9)), "scores", "[..., B, K]")
  if not float(epsilon) > 0:
    raise ValueError(f"epsilon must be > 0, got {epsilon}.")
  if int(num_iters) != num_iters or num_iters < 0:
    raise ValueError(f"num_iters must be an integer >= 0, got {num_iters}.")
  scores = jax.lax.stop_gradient(scores)
  codes = equipartition(
    scores,
    epsilon=float(epsilon),
    num_iters=int(num_iters),
    axis_name=axis_name,
  )
  return jax.lax.stop_gradient(codes)


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
  and value ``sum_ij T_ij cost_ij``. Gradients flow by unrolling the
  iterations (through ``log a`` and ``log b`` and ``cost``). One problem;
  use ``jax.vmap`` for a batch.

  Args:
    a: ``[C]`` source histogram (positive, summing to 1).
    b: ``[C]`` target histogram (positive, summing to 1).
    cost: ``[C, C]`` ground cost.
    epsilon: absolute entropic regularisation (> 0).
    num_iters: number of (f, g) update rounds (>= 1).

  Returns:
    :class:`OTOut` ``(value [], T [C, C], f [C], g [C])``.

  Raises:
    ValueError: on shapes other than ``[C]``, ``[C]``, ``[C, C]``, on
      ``epsilon <= 0`` or ``num_iters < 1``.

  Example:
    >>> out = entropic_ot(jnp.full(3, 1 / 3), jnp.full(3, 1 / 3),
    ...                   1.0 - jnp.eye(3))
    >>> bool(out.value < 0.1)
    True

  References:
    Cuturi, "Sinkhorn Distances", NeurIPS 2013; Peyre & Cuturi,
    "Computational Optimal Transport", 2019, §4.4 (log-domain updates).
  """
  a = as_float(a, "a")
  b = as_float(b, "b")
  cost = as_float(cost, "cost")
  check_rank(a, 1, "a", "[C]")
  check_rank(b, 1, "b", "[C]")
  check_rank(cost, 2, "cost", "[C, C]")
  num = a.shape[0]
  if b.shape != (num,) or cost.shape != (num, num):
    raise ValueError(
      f"a [C], b [C] and cost [C, C] must agree on C, got shapes"
      f" a {tuple(a.shape)}, b {tuple(b.shape)}, cost {tuple(cost.shape)}."
    )
  if not float(epsilon) > 0:
    raise ValueError(f"epsilon must be > 0, got {epsilon}.")
  if int(num_iters) != num_iters or num_iters < 1:
    raise ValueError(f"num_iters must be an integer >= 1, got {num_iters}.")
  dtype = jnp.result_type(a, b, cost)
  a, b, cost = a.astype(dtype), b.astype(dtype), cost.astype(dtype)
  eps = jnp.asarray(epsilon, dtype)
  log_a, log_b = jnp.log(a), jnp.log(b)
  neg_cost = -cost / eps

  def round_(carry, _):
    _, g = carry
    f = eps * log_a - eps * lse(g[None, :] / eps + neg_cost, axis=1)[:, 0]
    g = eps * log_b - eps * lse(f[:, None] / eps + neg_cost, axis=0)[0]
    return (f, g), None

  zeros = jnp.zeros((num,), dtype)
  (f, g), _ = jax.lax.scan(round_, (zeros, zeros), None, length=int(num_iters))
  plan = jnp.exp((f[:, None] + g[None, :]) / eps + neg_cost)
  value = jnp.sum(plan * cost)
  return OTOut(value=value, T=plan, f=f, g=g)
