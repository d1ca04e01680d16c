"""Contrastive losses: InfoNCE (SPEC §5), NT-Xent (§4.3), Pro-UCL (§3.1).

All three are written as global-batch math: under ``jit`` with the batch
sharded over a mesh no collective is needed. Under ``shard_map``/``pmap``
with the batch split over a mapped axis, pass ``axis_name``: each device
all-gathers the other items (the keys), computes its own anchors' terms and
the loss is reduced across the axis, so the returned value equals the
single-device loss on the concatenated global batch (means over the global
batch) on every device.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._explicit import replicate_explicit
from msjax.kernels._util import (
  DOT_PRECISION,
  as_float,
  check_labels,
  check_rank,
  lse,
)
from msjax.kernels.norms import l2_normalize

__all__ = ["info_nce", "nt_xent", "pro_ucl"]


def _check_tau(tau: float) -> None:
  if not float(tau) > 0:
    raise ValueError(f"tau must be > 0, got {tau}.")


def _normalized_views(
  x: ArrayLike, y: ArrayLike, names: tuple[str, str], tau: float
) -> tuple[jax.Array, jax.Array]:
  """Checks two ``[B, E]`` views and ``tau``; l2-normalises both.

  Args:
    x: ``[B, E]`` first view (any float dtype).
    y: ``[B, E]`` second view, same shape.
    names: the argument names of ``x`` and ``y`` for error messages.
    tau: temperature, checked to be > 0.

  Returns:
    ``(x, y)`` l2-normalised in their common float dtype.

  Raises:
    ValueError: if the views are not ``[B, E]`` of the same shape or
      ``tau <= 0``.
  """
  name_x, name_y = names
  x = as_float(x, name_x)
  y = as_float(y, name_y)
  check_rank(x, 2, name_x, "[B, E]")
  check_rank(y, 2, name_y, "[B, E]")
  if x.shape != y.shape:
    raise ValueError(
      f"{name_x} [B, E] and {name_y} [B, E] must have the same shape, got"
      f" {tuple(x.shape)} and {tuple(y.shape)}."
    )
  _check_tau(tau)
  dtype = jnp.result_type(x, y)
  return l2_normalize(x.astype(dtype)), l2_normalize(y.astype(dtype))


def _gather(
  x: jax.Array, axis_name: str | None, axis: int = 0
) -> tuple[jax.Array, jax.Array | int, int]:
  """All-gathers ``x`` along ``axis`` over ``axis_name``.

  Without ``axis_name`` the array already is the global batch; only a
  sharding over Explicit mesh axes is replaced by a replicated one.

  Returns:
    ``(x_global, offset, num_devices)``: the gathered array, the global index
    of this device's first local item, and the size of the mapped axis.
  """
  if axis_name is None:
    return replicate_explicit(x), 0, 1
  gathered = jax.lax.all_gather(x, axis_name, axis=axis, tiled=True)
  num_devices = gathered.shape[axis] // x.shape[axis]
  offset = jax.lax.axis_index(axis_name) * x.shape[axis]
  return gathered, offset, num_devices


def _global_mean(
  local_sum: jax.Array,
  local_count: int,
  axis_name: str | None,
  num_devices: int,
) -> jax.Array:
  """Mean over the global batch from per-device sums (last axis summed)."""
  if axis_name is not None:
    local_sum = jax.lax.psum(local_sum, axis_name)
  return local_sum / (local_count * num_devices)


def _cross_entropy_rows(logits: jax.Array, target: jax.Array) -> jax.Array:
  """``-log softmax(logits)[i, target[i]]`` per row: ``[R, N] -> [R]``."""
  picked = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
  return lse(logits, axis=1)[:, 0] - picked


def info_nce(
  a: ArrayLike,
  b: ArrayLike,
  *,
  tau: float = 0.07,
  axis_name: str | None = None,
) -> jax.Array:
  """Symmetric CLIP-style InfoNCE with positives on the diagonal (SPEC §5).

  ``L = 0.5 * (CE(n(a) n(b)^T / tau, diag) + CE(n(b) n(a)^T / tau, diag))``,
  each cross-entropy a mean over the ``B`` rows.

  Args:
    a: ``[B, E]`` embeddings of the first view/modality (any float dtype;
      16-bit floats are computed in float32); l2-normalised inside.
    b: ``[B, E]`` embeddings of the second view/modality, row ``i`` the
      positive of ``a[i]``; l2-normalised inside.
    tau: temperature (> 0).
    axis_name: mapped axis over which ``B`` is split under
      ``shard_map``/``pmap`` (``None``: the arrays are the whole batch).

  Returns:
    ``[]`` loss (float32 for 16-bit inputs), a mean over the global batch.

  Raises:
    ValueError: if ``a``/``b`` are not ``[B, E]`` of the same shape or
      ``tau <= 0``.

  Example:
    >>> x = jnp.eye(4)
    >>> bool(info_nce(x, x, tau=0.1) < 1e-3)
    True

  References:
    Radford et al., "Learning Transferable Visual Models From Natural
    Language Supervision" (CLIP), ICML 2021; van den Oord et al.,
    "Representation Learning with Contrastive Predictive Coding", 2018.
  """
  a, b = _normalized_views(a, b, ("a", "b"), tau)
  num_local = a.shape[0]
  a_all, offset, num_devices = _gather(a, axis_name)
  b_all, _, _ = _gather(b, axis_name)
  target = offset + jnp.arange(num_local)
  # Local anchors a against all b, and local anchors b against all a.
  logits_ab = jnp.matmul(a, b_all.T, precision=DOT_PRECISION) / tau
  logits_ba = jnp.matmul(b, a_all.T, precision=DOT_PRECISION) / tau
  local_sum = jnp.sum(
    _cross_entropy_rows(logits_ab, target)
    + _cross_entropy_rows(logits_ba, target)
  )
  return 0.5 * _global_mean(local_sum, num_local, axis_name, num_devices)


def nt_xent(
  h1: ArrayLike,
  h2: ArrayLike,
  *,
  tau: float = 0.1,
  axis_name: str | None = None,
) -> jax.Array:
  """SimCLR NT-Xent over the ``2B`` normalised vectors of two views (§4.3).

  With ``u = concat(n(h1), n(h2))`` (``2B`` rows) and ``s = u u^T / tau``,
  anchor ``i``'s positive is its other view (``i +- B``), its negatives the
  ``2B - 2`` remaining rows (itself excluded as a ``-inf`` logit)::

    L = mean_i  -(s[i, pos(i)] - lse_{j != i} s[i, j])

  Args:
    h1: ``[B, E]`` first-view vectors (any float dtype); l2-normalised inside.
    h2: ``[B, E]`` second-view vectors, row ``i`` the positive of ``h1[i]``.
    tau: temperature (> 0).
    axis_name: mapped axis over which ``B`` is split under
      ``shard_map``/``pmap`` (``None``: the arrays are the whole batch).

  Returns:
    ``[]`` loss (float32 for 16-bit inputs), a mean over the ``2B`` global
    anchors.

  Raises:
    ValueError: if ``h1``/``h2`` are not ``[B, E]`` of the same shape or
      ``tau <= 0``.

  Example:
    >>> x = jnp.eye(4)
    >>> bool(nt_xent(x, x, tau=0.1) < 1e-3)
    True

  References:
    Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (SimCLR), ICML 2020.
  """
  h1, h2 = _normalized_views(h1, h2, ("h1", "h2"), tau)
  num_local = h1.shape[0]
  h1_all, offset, num_devices = _gather(h1, axis_name)
  h2_all, _, _ = _gather(h2, axis_name)
  num_global = h1_all.shape[0]
  anchors = jnp.concatenate([h1, h2], axis=0)  # [2b, E]
  keys = jnp.concatenate([h1_all, h2_all], axis=0)  # [2B, E]
  # [2b, 2B]
  logits = jnp.matmul(anchors, keys.T, precision=DOT_PRECISION) / tau
  local = offset + jnp.arange(num_local)
  self_index = jnp.concatenate([local, local + num_global])
  positive = jnp.concatenate([local + num_global, local])
  is_self = self_index[:, None] == jnp.arange(2 * num_global)[None, :]
  logits = jnp.where(is_self, -jnp.inf, logits)
  local_sum = jnp.sum(_cross_entropy_rows(logits, positive))
  return _global_mean(local_sum, 2 * num_local, axis_name, num_devices)


def pro_ucl(
  z: ArrayLike,
  labels: ArrayLike,
  prototypes: ArrayLike,
  *,
  tau: float = 0.07,
  axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Prototype-augmented, class-averaged supervised contrastive loss (§3.1).

  Per modality ``m``, the ``N = B + C`` items are the batch ``f = z[m]`` and
  the prototypes (prototype ``c`` has label ``c``). For batch anchor ``i``::

    P(i)    = {n != i : yy[n] == y[i]}          (includes prototype y[i])
    cnt[c]  = |{n : yy[n] == c}|                (includes prototype c)
    w[i,n]  = cnt[yy[n]] - [yy[n] == y[i]]
    log den = lse_{n != i} (f_i . f_n / tau - log w[i,n])
    l[i]    = log den - mean_{j in P(i)} f_i . f_j / tau

  ``L_uni,m = mean_i l[i]``, ``L_uni = mean_m L_uni,m``. Inputs are used as
  given (the SPEC's "(normalised)" inputs are not re-normalised). The
  anchor's own pair is a ``-inf`` logit, so no NaN appears. Class counts
  ``cnt`` are over the global batch plus the prototypes.

  Args:
    z: ``[M, B, D]`` unimodal embeddings (unit rows; any float dtype).
    labels: ``[B]`` integer labels in ``0..C-1``.
    prototypes: ``[C, D]`` class prototypes (unit rows).
    tau: temperature (> 0).
    axis_name: mapped axis over which ``B`` is split under
      ``shard_map``/``pmap`` (``z`` and ``labels`` local shards,
      ``prototypes`` replicated); ``None``: the arrays are the whole batch.

  Returns:
    ``(loss [], per_modality [M])`` (float32 for 16-bit inputs), means over
    the global batch.

  Raises:
    ValueError: on shapes other than ``[M, B, D]``, ``[B]``, ``[C, D]``,
      non-integer labels, or ``tau <= 0``.

  Example:
    >>> p = jnp.eye(2)
    >>> loss, per_m = pro_ucl(p[None], jnp.array([0, 1]), p, tau=0.1)
    >>> per_m.shape
    (1,)

  References:
    Zhu et al., "Balanced Contrastive Learning for Long-Tailed Visual
    Recognition" (BCL), CVPR 2022; ProMoBal (prototype-guided modality
    balancing), Pro-UCL loss.
  """
  z = as_float(z, "z")
  prototypes = as_float(prototypes, "prototypes")
  check_rank(z, 3, "z", "[M, B, D]")
  check_rank(prototypes, 2, "prototypes", "[C, D]")
  num_mod, num_local, dim = z.shape
  num_classes = prototypes.shape[0]
  if prototypes.shape[1] != dim:
    raise ValueError(
      f"z [M, B, D] and prototypes [C, D] must agree on D, got shapes"
      f" {tuple(z.shape)} and {tuple(prototypes.shape)}."
    )
  labels = check_labels(labels, num_local)
  _check_tau(tau)
  dtype = jnp.result_type(z, prototypes)
  z, prototypes = z.astype(dtype), prototypes.astype(dtype)

  z_all, offset, num_devices = _gather(z, axis_name, axis=1)  # [M, B, D]
  labels_all, _, _ = _gather(labels, axis_name)  # [B]
  num_global = labels_all.shape[0]
  item_labels = jnp.concatenate(
    [labels_all, jnp.arange(num_classes, dtype=jnp.int32)]
  )  # [N]
  counts = jnp.sum(
    jax.nn.one_hot(item_labels, num_classes, dtype=dtype), axis=0
  )  # [C]

  same = labels[:, None] == item_labels[None, :]  # [b, N]
  local = offset + jnp.arange(num_local)
  is_self = local[:, None] == jnp.arange(num_global + num_classes)[None, :]
  positive = same & ~is_self
  weight = counts[item_labels][None, :] - same.astype(dtype)  # [b, N], >= 1
  num_positive = jnp.sum(positive, axis=1).astype(dtype)  # [b], >= 1

  keys = jnp.concatenate(
    [z_all, jnp.broadcast_to(prototypes, (num_mod, num_classes, dim))], axis=1
  )  # [M, N, D]
  # [M, b, N]
  logits = jnp.einsum("mbd,mnd->mbn", z, keys, precision=DOT_PRECISION) / tau
  pos_mean = (
    jnp.sum(jnp.where(positive[None], logits, 0.0), axis=2) / num_positive
  )
  masked = jnp.where(is_self[None], -jnp.inf, logits - jnp.log(weight)[None])
  log_den = lse(masked, axis=2)[..., 0]  # [M, b]
  local_sum = jnp.sum(log_den - pos_mean, axis=1)  # [M]
  per_modality = _global_mean(local_sum, num_local, axis_name, num_devices)
  return jnp.mean(per_modality), per_modality
