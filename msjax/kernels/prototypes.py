"""ProtoMM multimodal prototype prediction (MPP) loss (SPEC §2)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._explicit import contraction_sharding
from msjax.kernels._util import DOT_PRECISION, as_float, check_rank
from msjax.kernels.sinkhorn import sinkhorn_knopp

__all__ = ["MPPAux", "mpp_loss"]


class MPPAux(NamedTuple):
  """Auxiliary outputs of :func:`mpp_loss`.

  Attributes:
    L_within: ``[]`` within-modality term, or ``None`` when its weight
      ``alpha`` is 0 (not evaluated).
    L_between: ``[]`` between-modality term, or ``None`` when its weight
      ``1 - alpha`` is 0 (not evaluated).
    q: ``[M, V, B, K]`` Sinkhorn targets (gradient stopped).
    pair_ce: ``[MV, MV]`` ``l(a, b)`` for ``a = (m, v)``, ``b = (m', v')``
      flattened as ``m * V + v``; the diagonal holds ``l(a, a)``, which no
      loss term uses.
  """

  L_within: jax.Array | None  # noqa: N815 (SPEC name)
  L_between: jax.Array | None  # noqa: N815 (SPEC name)
  q: jax.Array
  pair_ce: jax.Array


def _pair_masks(
  num_modalities: int, num_views: int
) -> tuple[jax.Array, jax.Array]:
  """Static 0/1 masks ``[MV, MV]`` of the within and between pairs."""
  modality = jnp.repeat(jnp.arange(num_modalities), num_views)
  view = jnp.tile(jnp.arange(num_views), num_modalities)
  same_m = modality[:, None] == modality[None, :]
  same_v = view[:, None] == view[None, :]
  return same_m & ~same_v, ~same_m


def mpp_loss(
  z: ArrayLike,
  prototypes: ArrayLike,
  *,
  tau: float = 0.1,
  alpha: float = 0.5,
  epsilon: float = 0.05,
  num_iters: int = 3,
  axis_name: str | None = None,
) -> tuple[jax.Array, MPPAux]:
  """Multimodal prototype prediction loss of ProtoMM (SPEC §2).

  ::

    s[m,v]    = z[m,v] @ c.T                          # [B, K]
    q[m,v]    = sinkhorn_knopp(s[m,v])                # stop-gradient
    logp[m,v] = log_softmax(s[m,v] / tau)
    l(a, b)   = mean_b(-sum_k q[a] * logp[b])
    L_within  = mean over a=(m,v), b=(m,v'), v != v'
    L_between = mean over a=(m,v), b=(m',v'), m != m'
    L_MPP     = alpha * L_within + (1 - alpha) * L_between

  Inputs are used as given (not re-normalised): the gradients are those of
  the formula above (the ``grad_*`` keys of the test vectors). Callers keep
  ``z`` and the prototype rows on the unit sphere (ProtoMM re-normalises the
  prototypes after every update).

  Args:
    z: ``[M, V, B, E]`` l2-normalised embeddings (modality, view, batch).
    prototypes: ``[K, E]`` l2-normalised prototype rows ``c``.
    tau: softmax temperature of the predictions (> 0).
    alpha: static Python float in ``[0, 1]``; weight of ``L_within``. A term
      whose weight is 0 is not evaluated and comes back as ``None``.
    epsilon: Sinkhorn temperature (SPEC §1).
    num_iters: Sinkhorn rounds (SPEC §1).
    axis_name: mapped axis name when ``B`` is split across devices under
      ``shard_map``/``pmap``; batch means and the Sinkhorn marginals are
      then global, so the loss equals the single-device loss on the
      concatenated batch. Not needed under sharded ``jit``.

  Returns:
    ``(loss [], MPPAux(L_within, L_between, q [M, V, B, K],
    pair_ce [MV, MV]))``.

  Raises:
    ValueError: on bad ranks or mismatched ``E``, on ``alpha`` outside
      ``[0, 1]``, on ``V == 1`` with ``alpha != 0`` (``L_within`` undefined)
      and on ``M == 1`` with ``alpha != 1`` (``L_between`` undefined).

  Example:
    >>> z = jnp.ones((2, 2, 4, 3)) / jnp.sqrt(3.0)
    >>> loss, aux = mpp_loss(z, jnp.eye(3))
    >>> aux.pair_ce.shape
    (4, 4)

  References:
    ProtoMM (multimodal prototype prediction); Caron et al., SwAV,
    NeurIPS 2020 (swapped prediction).
  """
  z = as_float(z, "z")
  prototypes = as_float(prototypes, "prototypes")
  check_rank(z, 4, "z", "[M, V, B, E]")
  check_rank(prototypes, 2, "prototypes", "[K, E]")
  num_modalities, num_views, _, width = z.shape
  if prototypes.shape[1] != width:
    raise ValueError(
      f"z [M, V, B, E] and prototypes [K, E] must agree on E, got shapes"
      f" {tuple(z.shape)} and {tuple(prototypes.shape)}."
    )
  if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
    raise ValueError(
      f"alpha must be a static Python float in [0, 1], got {alpha!r}."
    )
  if not float(tau) > 0:
    raise ValueError(f"tau must be > 0, got {tau}.")
  if num_views == 1 and alpha != 0.0:
    raise ValueError(
      f"L_within needs V >= 2 views, got z shape {tuple(z.shape)} (V = 1)"
      f" with alpha = {alpha}: pass alpha=0.0 (between-modality only)."
    )
  if num_modalities == 1 and alpha != 1.0:
    raise ValueError(
      f"L_between needs M >= 2 modalities, got z shape {tuple(z.shape)}"
      f" (M = 1) with alpha = {alpha}: pass alpha=1.0 (unimodal SwAV)."
    )
  dtype = jnp.result_type(z, prototypes)
  z, prototypes = z.astype(dtype), prototypes.astype(dtype)

  scores = jnp.einsum("mvbe,ke->mvbk", z, prototypes, precision=DOT_PRECISION)
  q = sinkhorn_knopp(
    scores, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name
  )
  logp = jax.nn.log_softmax(scores / jnp.asarray(tau, dtype), axis=-1)
  num_pairs = num_modalities * num_views
  batch = scores.shape[2]
  q_flat = q.reshape(num_pairs, batch, -1)
  logp_flat = logp.reshape(num_pairs, batch, -1)
  pair_sum = -jnp.einsum(
    "abk,cbk->ac",
    q_flat,
    logp_flat,
    precision=DOT_PRECISION,
    **contraction_sharding(logp_flat, (None, None)),
  )
  if axis_name is not None:
    pair_sum = jax.lax.psum(pair_sum, axis_name)
    batch = batch * jax.lax.axis_size(axis_name)
  pair_ce = pair_sum / batch

  within_mask, between_mask = _pair_masks(num_modalities, num_views)
  within = between = None
  loss = jnp.zeros((), dtype)
  if alpha != 0.0:
    count = num_modalities * num_views * (num_views - 1)
    within = jnp.sum(jnp.where(within_mask, pair_ce, 0.0)) / count
    loss = loss + alpha * within
  if alpha != 1.0:
    count = num_pairs * (num_pairs - num_views)
    between = jnp.sum(jnp.where(between_mask, pair_ce, 0.0)) / count
    loss = loss + (1.0 - alpha) * between
  return loss, MPPAux(L_within=within, L_between=between, q=q, pair_ce=pair_ce)
