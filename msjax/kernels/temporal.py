"""Temporal-locality ranking loss over consecutive windows (SPEC §4.3).

Windows of the same sequence (consecutive in time) should be closer, on
average, than windows of different sequences: a hinge on the mean pairwise
distances ``Cmat[s, s']`` between sequences.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._util import as_float, check_rank
from msjax.kernels.norms import safe_norm

__all__ = ["temporal_locality"]


def temporal_locality(
  h: ArrayLike,
  *,
  margin: float = 1.0,
  eta: float = 1.0,
  exclude_self_pairs: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """Temporal-locality loss ``L_temp`` (SPEC §4.3).

  ::

    Cmat[s, s'] = mean_{i, j} ||h[s, i] - h[s', j]||_2
    L_temp = eta * sum_s sum_{s' != s}
             max(Cmat[s, s] - Cmat[s, s'] + margin, 0) / (S * (S - 1))

  Embeddings are used as given (not normalised). Distances use a safe norm:
  the zero self-distances have zero gradient. With ``exclude_self_pairs``
  (FOCAL's convention) the diagonal ``Cmat[s, s]`` averages over the
  ``L * (L - 1)`` pairs ``i != j`` only.

  Memory: the ``[S*L, S*L, E]`` difference tensor (exact for nearby
  points, unlike the Gram-matrix form of the distance).

  Args:
    h: ``[S, L, E]`` window embeddings, ``S`` sequences of ``L`` consecutive
      windows (a sequence-major batch ``[S * L, E]`` reshaped).
    margin: hinge margin.
    eta: loss weight.
    exclude_self_pairs: drop ``i == j`` pairs from the diagonal of ``Cmat``.

  Returns:
    ``(loss, cmat)``: scalar loss and ``[S, S]`` mean distances (with
    ``exclude_self_pairs``, the diagonal as used in the loss).

  Raises:
    ValueError: if ``h`` is not rank 3, ``S < 2``, or ``L < 2`` with
      ``exclude_self_pairs``.

  Example:
    >>> loss, cmat = temporal_locality(h.reshape(S, L, E))
  """
  h = as_float(h, "h")
  check_rank(h, 3, "h", "[S, L, E]")
  s, length, e = h.shape
  if s < 2:
    raise ValueError(f"temporal_locality needs S >= 2 sequences, got S={s}.")
  if exclude_self_pairs and length < 2:
    raise ValueError(
      f"exclude_self_pairs needs L >= 2 windows per sequence, got L={length}."
    )
  flat = h.reshape(s * length, e)
  dist = safe_norm(flat[:, None, :] - flat[None, :, :], axis=-1)
  dist = dist.reshape(s, length, s, length)
  cmat = jnp.mean(dist, axis=(1, 3))  # [S, S]
  if exclude_self_pairs:
    # Self distances are exactly 0, so dropping them rescales the sum:
    # sum_{i != j} / (L (L - 1)) = mean_{i, j} * L / (L - 1).
    diag = jnp.diagonal(cmat) * (length / (length - 1))
    cmat = jnp.where(jnp.eye(s, dtype=bool), jnp.diag(diag), cmat)
  own = jnp.diagonal(cmat)
  hinge = jax.nn.relu(own[:, None] - cmat + margin)
  off_diagonal = ~jnp.eye(s, dtype=bool)
  loss = eta * jnp.sum(jnp.where(off_diagonal, hinge, 0.0)) / (s * (s - 1))
  return loss, cmat
