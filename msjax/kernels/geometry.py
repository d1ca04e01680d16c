"""Prototype geometry: classifier alignment (SPEC §3.5) and FC/RS (§3.7).

* :func:`ca_loss`: pulls each modality's linear classifier and the shared
  prototypes toward the same Frobenius-normalised direction.
* :func:`fc_rs`: feature compactness and representation separation, the
  geometry metrics of ProMoBal's appendix B.
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
)
from msjax.kernels.norms import l2_normalize, safe_norm

__all__ = ["ca_loss", "fc_rs"]

_NORM_EPS = 1e-12


def ca_loss(
  classifier_weights: ArrayLike,
  prototypes: ArrayLike,
) -> tuple[jax.Array, jax.Array]:
  """Classifier alignment loss (SPEC §3.5).

  ::

    L_CA,m = || W[m] / ||W[m]||_F  -  P / ||P||_F ||_F^2
    L_CA   = mean_m L_CA,m

  No stop-gradient: both the classifiers and the prototypes receive
  gradients. Frobenius norms are safe (``max(||.||_F, 1e-12)``, zero
  gradient at 0).

  Args:
    classifier_weights: ``[M, C, D]`` per-modality classifier weights ``W``
      (any float dtype).
    prototypes: ``[C, D]`` class prototypes ``P``.

  Returns:
    ``(loss [], per_modality [M])`` (float32 for 16-bit inputs).

  Raises:
    ValueError: if the shapes are not ``[M, C, D]`` and ``[C, D]``.

  Example:
    >>> p = jnp.eye(3)
    >>> loss, per_m = ca_loss(jnp.stack([p, 2 * p]), p)
    >>> float(loss)
    0.0
  """
  weights = as_float(classifier_weights, "classifier_weights")
  prototypes = as_float(prototypes, "prototypes")
  check_rank(weights, 3, "classifier_weights", "[M, C, D]")
  check_rank(prototypes, 2, "prototypes", "[C, D]")
  if weights.shape[1:] != prototypes.shape:
    raise ValueError(
      f"classifier_weights [M, C, D] and prototypes [C, D] must agree on"
      f" (C, D), got shapes {tuple(weights.shape)} and"
      f" {tuple(prototypes.shape)}."
    )
  dtype = jnp.result_type(weights, prototypes)
  weights = weights.astype(dtype).reshape(weights.shape[0], -1)  # [M, C*D]
  protos = prototypes.astype(dtype).reshape(-1)  # [C*D]
  weights = l2_normalize(weights, axis=-1)
  protos = l2_normalize(protos, axis=-1)
  diff = weights - protos[None]
  per_modality = jnp.sum(diff * diff, axis=-1)
  return jnp.mean(per_modality), per_modality


def fc_rs(
  features: ArrayLike,
  labels: ArrayLike,
  *,
  num_classes: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Feature compactness (FC) and representation separation (RS) (§3.7).

  Features are l2-normalised first (``f``)::

    class_fc[c] = mean_{i < j, y_i = y_j = c} ||f_i - f_j||_2
    FC          = mean over classes with >= 2 samples of class_fc[c]
    mu_c        = mean_{i : y_i = c} f_i          (not re-normalised)
    RS          = mean_{c != c', both present} ||mu_c - mu_c'||_2

  Pairwise distances come from the Gram matrix (``O(N^2)`` memory, not
  ``O(N^2 D)``) with a safe square root; the diagonal is excluded exactly.
  Labels outside ``0..C-1`` (e.g. ``-1`` for unlabelled) are ignored.
  ``num_classes`` is static, so the function is ``jit``-able.

  Args:
    features: ``[N, D]`` features (any float dtype).
    labels: ``[N]`` integer labels.
    num_classes: number of classes ``C`` (static Python int, >= 1).

  Returns:
    ``(FC [], RS [], class_fc [C])`` (float32 for 16-bit inputs).
    ``class_fc`` is NaN for classes with fewer than 2 samples; ``FC`` is NaN
    if no class has 2 samples and ``RS`` is NaN if fewer than 2 classes are
    present.

  Raises:
    ValueError: on bad shapes or dtypes or ``num_classes < 1``.

  Example:
    >>> f = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> fc, rs, _ = fc_rs(f, jnp.array([0, 0, 1, 1]), num_classes=2)
    >>> float(fc), round(float(rs), 4)
    (0.0, 1.4142)

  References:
    ProMoBal, appendix B (geometry of the learnt representation).
  """
  features = as_float(features, "features")
  check_rank(features, 2, "features", "[N, D]")
  if int(num_classes) != num_classes or num_classes < 1:
    raise ValueError(f"num_classes must be an integer >= 1, got {num_classes}.")
  num = features.shape[0]
  labels = check_labels(labels, num, shape_doc="[N]")
  dtype = features.dtype
  # pairwise over the whole set: replicate an Explicit batch sharding
  feats = l2_normalize(replicate_explicit(features))
  labels = replicate_explicit(labels)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=dtype)  # [N, C]
  counts = jnp.sum(onehot, axis=0)  # [C]

  sq_norm = jnp.sum(feats * feats, axis=1)
  sq_dist = (
    sq_norm[:, None]
    + sq_norm[None, :]
    - 2.0 * jnp.matmul(feats, feats.T, precision=DOT_PRECISION)
  )
  off_diag = ~jnp.eye(num, dtype=bool)
  sq_dist = jnp.where(off_diag, jnp.maximum(sq_dist, 0.0), 0.0)
  positive = sq_dist > 0
  dist = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq_dist, 1.0)), 0.0)

  pair_sum = jnp.einsum(
    "ic,ij,jc->c", onehot, dist, onehot, precision=DOT_PRECISION
  )  # ordered pairs
  num_pairs = counts * (counts - 1.0)
  has_pairs = counts >= 2
  class_fc = jnp.where(
    has_pairs, pair_sum / jnp.where(has_pairs, num_pairs, 1.0), jnp.nan
  )
  num_fc = jnp.sum(has_pairs)
  fc = jnp.where(
    num_fc > 0,
    jnp.sum(jnp.where(has_pairs, class_fc, 0.0)) / jnp.maximum(num_fc, 1),
    jnp.nan,
  )

  present = counts > 0
  means = (
    jnp.matmul(onehot.T, feats, precision=DOT_PRECISION)
    / jnp.maximum(counts, 1.0)[:, None]
  )  # [C, D]
  mean_dist = safe_norm(means[:, None, :] - means[None, :, :])  # [C, C]
  pair_mask = (
    present[:, None] & present[None, :] & ~jnp.eye(num_classes, dtype=bool)
  )
  num_rs = jnp.sum(pair_mask)
  rs = jnp.where(
    num_rs > 0,
    jnp.sum(jnp.where(pair_mask, mean_dist, 0.0)) / jnp.maximum(num_rs, 1),
    jnp.nan,
  )
  return fc.astype(dtype), rs.astype(dtype), class_fc
