"""Augmented views made on device with :mod:`msjax.data.augment`.

Every method that augments reads one section shape, ``loss.augment`` (or
``loss.<name>_augment`` for a method with several): ``ops``, per-op
``params`` and ``probability`` (:func:`augment_config`).
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections

from msjax.data import augment as augment_lib

__all__ = ["DEFAULT_PARAMS", "augment_batch", "augment_config", "make_views"]


#: Default hyperparameters of the common ops (``loss.augment.params``).
DEFAULT_PARAMS = dict(
  jitter=dict(sigma=0.03),
  scaling=dict(sigma=0.2),
  time_mask=dict(max_fraction=0.2),
)


def augment_config(
  ops: tuple[str, ...] = ("jitter", "time_mask"),
  *,
  probability: float = 0.8,
  **params: dict[str, float],
) -> ml_collections.ConfigDict:
  """An augmentation section: ops, per-op hyperparameters, probability.

  Args:
    ops: names of :data:`msjax.data.augment.OPS`, applied in order (``()``:
      views are the raw batch).
    probability: each op is applied to each sample with this probability.
    **params: ``op=dict(hyperparameter=value)`` added to (or overriding)
      :data:`DEFAULT_PARAMS`.

  Returns:
    ``ConfigDict(ops, params={op: {hyperparameter: value}}, probability)``.
  """
  table = {op: dict(p) for op, p in DEFAULT_PARAMS.items()}
  for op, values in params.items():
    table[op] = {**table.get(op, {}), **values}
  return ml_collections.ConfigDict(
    dict(ops=tuple(ops), params=table, probability=probability)
  )


def augment_batch(
  key: jax.Array, x: jax.Array, aug: ml_collections.ConfigDict
) -> jax.Array:
  """One augmented view of ``x`` as an augmentation section describes it.

  Args:
    key: PRNG key.
    x: ``[B, C, T]`` or ``[B, C, F, N]``.
    aug: a section from :func:`augment_config` (``ops``, ``params``,
      ``probability``); ``params`` of ops not in ``ops`` are ignored.

  Returns:
    ``x`` augmented (``x`` itself when ``aug.ops`` is empty).
  """
  ops = tuple(aug.ops)
  if not ops:
    return jnp.asarray(x)
  params = {op: dict(p) for op, p in dict(aug.params).items() if op in ops}
  return augment_lib.augment(
    key, x, ops=ops, params=params, probability=aug.probability
  )


def make_views(
  key: jax.Array,
  signals: Mapping[str, jax.Array],
  aug: ml_collections.ConfigDict,
  num_views: int,
) -> dict[str, jax.Array]:
  """``num_views`` augmented views per modality, stacked view-major.

  Args:
    key: the ``augment`` stream.
    signals: ``{m: [B, C, ...]}``.
    aug: the ``loss.augment`` section (see :func:`augment_config`).
    num_views: ``V`` (>= 1).

  Returns:
    ``{m: [V * B, C, ...]}``; rows ``v * B .. (v + 1) * B - 1`` are view
    ``v``. Every (modality, view) pair has its own key.
  """
  if num_views < 1:
    raise ValueError(f"num_views must be >= 1, got {num_views}.")
  out = {}
  for i, (m, x) in enumerate(signals.items()):
    views = [
      augment_batch(jax.random.fold_in(jax.random.fold_in(key, i), v), x, aug)
      for v in range(num_views)
    ]
    out[m] = jnp.concatenate(views, axis=0)
  return out
