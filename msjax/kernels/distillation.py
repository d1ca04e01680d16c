"""Pro-FD: prototype-fusion distillation with entropic OT (SPEC §3.4).

The per-sample OT problems share one ``[C, C]`` cost, so they are solved
together by :func:`msjax.kernels.ot.shared_cost_ot` (the one OT solver:
kernel-domain rounds as ``[B, C] x [C, C]`` matrix products, log domain
where those are inexact, unrolled gradients).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._explicit import take_rows
from msjax.kernels._util import (
  DOT_PRECISION,
  as_float,
  check_labels,
  check_rank,
)
from msjax.kernels.ot import check_ot_hyper, shared_cost_ot

__all__ = ["ProFDAux", "pro_fd"]


class ProFDAux(NamedTuple):
  """Auxiliary outputs of :func:`pro_fd` (SPEC §3.4).

  Attributes:
    per_sample: ``[B]`` OT value per sample.
    psi_ref: ``[B, C]`` reference distributions (gradient stopped).
    psi_fus: ``[B, C]`` fused-vector distributions.
    cost: ``[C, C]`` ground cost ``1 - sg(P) sg(P)^T``.
  """

  per_sample: jax.Array
  psi_ref: jax.Array
  psi_fus: jax.Array
  cost: jax.Array


def pro_fd(
  z_fus: ArrayLike,
  labels: ArrayLike,
  prototypes: ArrayLike,
  *,
  tau_fd: float = 1.0,
  epsilon: float = 0.1,
  num_iters: int = 20,
) -> tuple[jax.Array, ProFDAux]:
  """Prototype-fusion distillation loss (SPEC §3.4).

  ::

    psi_ref[b]  = softmax_c(sg(P[y[b]]) . sg(P[c]) / tau_fd)
    psi_fus[b]  = softmax_c(z_fus[b] . P[c] / tau_fd)
    cost[c, c'] = 1 - sg(P[c]) . sg(P[c'])
    L_fus       = mean_b OT_eps(psi_ref[b], psi_fus[b]; cost)

  ``OT_eps`` is :func:`~msjax.kernels.ot.entropic_ot` (log-domain
  Sinkhorn from zero potentials, ``num_iters`` rounds, unrolled for the
  gradient), solved for the whole batch at once by
  :func:`~msjax.kernels.ot.shared_cost_ot`; ``log psi`` enters the
  updates as a ``log_softmax`` (the same value, no ``log(0)``). Gradients
  reach ``z_fus`` and ``P`` only through ``psi_fus``.

  Args:
    z_fus: ``[B, D]`` fused vectors (unit rows; any float dtype).
    labels: ``[B]`` integer labels in ``0..C-1``.
    prototypes: ``[C, D]`` class prototypes ``P`` (unit rows).
    tau_fd: distribution temperature (> 0).
    epsilon: OT entropic regularisation (absolute, > 0).
    num_iters: Sinkhorn rounds (>= 1).

  Returns:
    ``(loss [], ProFDAux(per_sample [B], psi_ref [B, C], psi_fus [B, C],
    cost [C, C]))`` (float32 for 16-bit inputs).

  Raises:
    ValueError: on bad shapes or dtypes or non-positive hyperparameters.

  Example:
    >>> p = jnp.eye(3)
    >>> loss, aux = pro_fd(p, jnp.arange(3), p)
    >>> aux.psi_ref.shape
    (3, 3)

  References:
    ProMoBal, Pro-FD loss; Cuturi, "Sinkhorn Distances", NeurIPS 2013.
  """
  z_fus = as_float(z_fus, "z_fus")
  prototypes = as_float(prototypes, "prototypes")
  check_rank(z_fus, 2, "z_fus", "[B, D]")
  check_rank(prototypes, 2, "prototypes", "[C, D]")
  batch, dim = z_fus.shape
  if prototypes.shape[1] != dim:
    raise ValueError(
      f"z_fus [B, D] and prototypes [C, D] must agree on D, got shapes"
      f" {tuple(z_fus.shape)} and {tuple(prototypes.shape)}."
    )
  labels = check_labels(labels, batch)
  if not float(tau_fd) > 0:
    raise ValueError(f"tau_fd must be > 0, got {tau_fd}.")
  check_ot_hyper(epsilon, num_iters)
  dtype = jnp.result_type(z_fus, prototypes)
  z_fus, prototypes = z_fus.astype(dtype), prototypes.astype(dtype)

  proto_sg = jax.lax.stop_gradient(prototypes)
  gram = jnp.matmul(proto_sg, proto_sg.T, precision=DOT_PRECISION)  # [C, C]
  cost = 1.0 - gram
  log_ref = jax.nn.log_softmax(
    take_rows(gram, labels) / tau_fd, axis=1
  )  # [B, C]
  log_fus = jax.nn.log_softmax(
    jnp.matmul(z_fus, prototypes.T, precision=DOT_PRECISION) / tau_fd, axis=1
  )
  # cost is built from sg(P): its cotangent is not computed.
  ot = shared_cost_ot(
    log_ref,
    log_fus,
    cost,
    epsilon=epsilon,
    num_iters=num_iters,
    cost_grad=False,
  )
  aux = ProFDAux(
    per_sample=ot.value,
    psi_ref=jnp.exp(log_ref),
    psi_fus=jnp.exp(log_fus),
    cost=cost,
  )
  return jnp.mean(ot.value), aux
