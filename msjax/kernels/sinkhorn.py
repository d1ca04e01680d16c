"""Sinkhorn-Knopp equipartition codes (SPEC §1), SwAV's prototype targets.

:func:`sinkhorn_knopp` is exactly the log-domain iteration of the SPEC,
computed by the OT solver of :mod:`msjax.kernels.ot` (kernel domain, with
its in-graph log-domain fallback). Entropic OT between histograms
(SPEC §3.4) is :func:`msjax.kernels.ot.entropic_ot`.
"""

import jax
from jax.typing import ArrayLike

from msjax.kernels._util import as_float, check_rank
from msjax.kernels.ot import equipartition

__all__ = ["sinkhorn_knopp"]


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
    >>> import jax.numpy as jnp
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
