"""Density-ratio estimation and InfoMAE's information losses (SPEC §4.1-4.2).

* :func:`discriminator_bce`: the discriminator loss ``L_D`` on joint and
  product-of-marginals logits.
* :func:`product_of_marginals` / :func:`marginal_permutations`: samples of
  the product of marginals by independent permutations of the batch.
* :func:`infomae_shared_loss`, :func:`infomae_private_loss`: ``L_shared`` and
  ``L_private`` from discriminator logits on joint tuples.

A discriminator logit ``t`` estimates ``log p(joint) / p(product)`` (the
density-ratio trick, ``log R / (1 - R) = t`` with ``R = sigmoid(t)``).
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._util import as_float, check_rank, check_same_shape

__all__ = [
  "discriminator_bce",
  "infomae_private_loss",
  "infomae_shared_loss",
  "marginal_permutations",
  "product_of_marginals",
]


def _weighted_mean(x: jax.Array, weights: jax.Array | None) -> jax.Array:
  """Mean of ``x [..., B]`` over its last axis, rows weighted by ``w [B]``.

  ``sum_b w_b x_b / max(sum_b w_b, tiny)``; ``weights=None`` is the plain
  mean. All-zero weights give 0.
  """
  if weights is None:
    return jnp.mean(x, axis=-1)
  w = jnp.asarray(weights, x.dtype)
  if w.shape != x.shape[-1:]:
    raise ValueError(
      f"weights must have shape [B] = {x.shape[-1:]}, got {tuple(w.shape)}."
    )
  return jnp.sum(x * w, axis=-1) / jnp.maximum(
    jnp.sum(w), jnp.finfo(x.dtype).tiny
  )


def discriminator_bce(
  t_joint: ArrayLike, t_product: ArrayLike, *, weights: ArrayLike | None = None
) -> jax.Array:
  """Discriminator loss ``L_D = BCE(t_joint, 1) + BCE(t_product, 0)`` (§4.1).

  ``mean softplus(-t_joint) + mean softplus(t_product)``, computed stably
  from logits. Callers pass logits computed on ``sg`` of the
  representations (the discriminator alone minimises this).

  Args:
    t_joint: ``[B]`` (or any shape) logits on joint (aligned) tuples.
    t_product: ``[B']`` (or any shape) logits on product-of-marginals tuples.
    weights: optional ``[B]`` row weights for both means (``t_joint`` and
      ``t_product`` then have shape ``[B]``): e.g. 1 for synchronized rows,
      0 for rows whose modalities come from different windows. ``None``:
      the plain means of SPEC §4.1.

  Returns:
    Scalar loss (float32 for 16-bit inputs).

  Example:
    >>> float(discriminator_bce(jnp.zeros(4), jnp.zeros(4)))  # 2 log 2
    1.386...
  """
  t_joint = as_float(t_joint, "t_joint")
  t_product = as_float(t_product, "t_product")
  if t_joint.size == 0 or t_product.size == 0:
    raise ValueError("t_joint and t_product must be non-empty.")
  if weights is None:
    return jnp.mean(jax.nn.softplus(-t_joint)) + jnp.mean(
      jax.nn.softplus(t_product)
    )
  check_rank(t_joint, 1, "t_joint", "[B] (with weights)")
  check_same_shape(t_joint, t_product, "t_joint", "t_product")
  return _weighted_mean(jax.nn.softplus(-t_joint), weights) + _weighted_mean(
    jax.nn.softplus(t_product), weights
  )


def marginal_permutations(
  key: jax.Array, batch_size: int, num: int
) -> jax.Array:
  """``num`` independent uniformly random permutations of ``range(B)``.

  Args:
    key: PRNG key; permutation ``k`` uses ``jax.random.split(key, num)[k]``.
    batch_size: ``B``.
    num: number of permutations (one per tuple argument).

  Returns:
    ``[num, B]`` int32, each row a permutation.
  """
  if batch_size < 1 or num < 1:
    raise ValueError(
      f"batch_size and num must be >= 1, got {batch_size} and {num}."
    )
  keys = jax.random.split(key, num)
  perms = jax.vmap(lambda k: jax.random.permutation(k, batch_size))(keys)
  return perms.astype(jnp.int32)


def product_of_marginals(
  key: jax.Array, *arrays: ArrayLike
) -> tuple[jax.Array, ...]:
  """Product-of-marginals tuples by independent permutations (SPEC §4.1).

  Argument ``k`` is permuted along its batch axis (axis 0) by its own
  permutation ``marginal_permutations(key, B, len(arrays))[k]``, so the
  tuple ``(out[0][b], out[1][b], ...)`` combines rows drawn independently
  from each marginal. Passing the same key with the same number of arrays
  gives the same permutations (e.g. to build the 3-tuple ``(X1, X2, U1)``
  and the 2-tuple ``(X1, U1)`` from different keys, fold distinct integers
  into one key).

  Args:
    key: PRNG key.
    *arrays: one or more arrays ``[B, ...]`` sharing the leading size ``B``
      (raw inputs ``[B, C, F, N]`` or representations ``[B, E]``).

  Returns:
    A tuple with one permuted array per input, shapes unchanged.

  Raises:
    ValueError: if no array is given or the leading sizes differ.

  Example:
    >>> x1p, u1p = product_of_marginals(jax.random.key(0), x1, u1)
  """
  if not arrays:
    raise ValueError("product_of_marginals needs at least one array.")
  arrays = tuple(jnp.asarray(a) for a in arrays)
  for k, a in enumerate(arrays):
    if a.ndim < 1:
      raise ValueError(f"arrays[{k}] must have a batch axis, got a scalar.")
  sizes = {a.shape[0] for a in arrays}
  if len(sizes) != 1:
    raise ValueError(
      "arrays must share the batch size B, got leading sizes"
      f" {[a.shape[0] for a in arrays]}."
    )
  perms = marginal_permutations(key, arrays[0].shape[0], len(arrays))
  return tuple(jnp.take(a, perms[k], axis=0) for k, a in enumerate(arrays))


def _check_logits(t: jax.Array, name: str, batch: int | None) -> None:
  check_rank(t, 2, name, "[2, B]")
  if t.shape[0] != 2 or (batch is not None and t.shape[1] != batch):
    raise ValueError(
      f"{name} must have shape [2, B]{'' if batch is None else f' (B={batch})'}"
      f", got {tuple(t.shape)}."
    )


def infomae_shared_loss(
  u1: ArrayLike,
  u2: ArrayLike,
  t_x1x2u: ArrayLike,
  t_xiui: ArrayLike,
  t_xjui: ArrayLike,
  *,
  alpha: float = 1.0,
  beta: float = 0.5,
  weights: ArrayLike | None = None,
) -> jax.Array:
  """InfoMAE shared-information loss ``L_shared`` (SPEC §4.2).

  ``alpha * mean_b ||U1 - U2||^2 + sum_i mean_b [t(X1, X2, U_i)
  + (1 - beta) t(X_i, U_i) + t(X_{3-i}, U_i)]``, the logits coming from
  discriminators held fixed (``sg`` on their parameters, by the caller).

  Args:
    u1: ``[B, E]`` shared representation of modality 1.
    u2: ``[B, E]`` shared representation of modality 2.
    t_x1x2u: ``[2, B]``, row ``i`` = ``t(X1, X2, U_{i+1})``.
    t_xiui: ``[2, B]``, row ``i`` = ``t(X_{i+1}, U_{i+1})``.
    t_xjui: ``[2, B]``, row ``i`` = ``t(X_{2-i}, U_{i+1})`` (the other
      modality's input).
    alpha: weight of the squared distance term.
    beta: the ``(1 - beta)`` weight of ``t(X_i, U_i)``.
    weights: optional ``[B]`` row weights replacing every ``mean_b`` by a
      weighted mean (1 for synchronized pairs, 0 for unpaired rows);
      ``None``: SPEC's plain means.

  Returns:
    Scalar loss.
  """
  u1 = as_float(u1, "u1")
  u2 = as_float(u2, "u2")
  check_rank(u1, 2, "u1", "[B, E]")
  check_same_shape(u1, u2, "u1", "u2")
  batch = u1.shape[0]
  logits = []
  for name, t in (("t_x1x2u", t_x1x2u), ("t_xiui", t_xiui), ("t_xjui", t_xjui)):
    t = as_float(t, name)
    _check_logits(t, name, batch)
    logits.append(t)
  t_x1x2u, t_xiui, t_xjui = logits
  distance = _weighted_mean(jnp.sum((u1 - u2) ** 2, axis=-1), weights)
  per_i = _weighted_mean(t_x1x2u + (1.0 - beta) * t_xiui + t_xjui, weights)
  return alpha * distance + jnp.sum(per_i)


def infomae_private_loss(
  t_xv: ArrayLike,
  t_vu: ArrayLike,
  *,
  gamma: float = 0.1,
  eps: float = 0.1,
  weights: ArrayLike | None = None,
) -> jax.Array:
  """InfoMAE private-information loss ``L_private`` (SPEC §4.2).

  ``sum_i mean_b [gamma * t(X_i, V_i) + eps * t(V_i, U_i)]``.

  Args:
    t_xv: ``[2, B]``, row ``i`` = ``t(X_{i+1}, V_{i+1})``.
    t_vu: ``[2, B]``, row ``i`` = ``t(V_{i+1}, U_{i+1})``.
    gamma: weight of the input/private term.
    eps: weight of the private/shared term.
    weights: optional ``[B]`` row weights (as in
      :func:`infomae_shared_loss`).

  Returns:
    Scalar loss.
  """
  t_xv = as_float(t_xv, "t_xv")
  t_vu = as_float(t_vu, "t_vu")
  _check_logits(t_xv, "t_xv", None)
  _check_logits(t_vu, "t_vu", t_xv.shape[1])
  return jnp.sum(_weighted_mean(gamma * t_xv + eps * t_vu, weights))
