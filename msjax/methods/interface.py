"""The method interface: one typed :class:`Method` record and its defaults.

A method is a handful of pure functions over a config and a variables dict
(docs/architecture.md). :class:`Method` names them: four are required, the
optional hooks default to the functions below, so the trainer calls every
field without asking whether it exists.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.methods.config_checks import SIZES

__all__ = [
  "Method",
  "all_main_labels",
  "always_paired",
  "copy_matching",
  "identity_post_update",
  "never_paired",
]

Config = ml_collections.ConfigDict
Variables = dict[str, Any]
Metrics = dict[str, jax.Array]


def all_main_labels(params: Any, config: Config) -> Any:
  """Optimiser group of every parameter leaf: ``"main"``."""
  del config
  return jax.tree.map(lambda _: "main", params)


def identity_post_update(params: Any, config: Config, step: jax.Array) -> Any:
  """No post-update projection: returns ``params``."""
  del config, step
  return params


def always_paired(config: Config) -> bool:
  """``requires_paired_rows`` of a cross-modal objective: ``True``."""
  del config
  return True


def never_paired(config: Config) -> bool:
  """``requires_paired_rows`` of a per-modality objective: ``False``."""
  del config
  return False


def copy_matching(params: Any, pretrained: Any, config: Config) -> Any:
  """``params`` with every leaf of equal path and shape from ``pretrained``.

  Args:
    params: the freshly initialised parameters.
    pretrained: parameters read from another run (host numpy).
    config: the experiment config (unused).

  Returns:
    ``params``' tree; a leaf whose path and shape exist in ``pretrained`` is
    the pretrained value cast to the fresh dtype.
  """
  del config
  flat = {
    jax.tree_util.keystr(path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(pretrained)
  }

  def pick(path: Any, leaf: Any) -> Any:
    source = flat.get(jax.tree_util.keystr(path))
    if source is not None and np.shape(source) == np.shape(leaf):
      return jax.numpy.asarray(source, leaf.dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(pick, params)


@dataclasses.dataclass(frozen=True)
class Method:
  """The functions of one method (every value of ``msjax.methods.METHODS``).

  ``Method(default_config, init, loss_fn, embed, *, <optional hooks>)``.

  Attributes:
    default_config: ``(size="tiny") -> ConfigDict(model, loss)``, every key
      declared.
    init: ``(rng, config, example_batch) -> variables`` (``{"params", ...}``).
    loss_fn: ``(variables, batch, rng, config, step) -> (loss [], (new
      model state, metrics))``; metrics a flat dict of scalars.
    embed: ``(variables, batch, config) -> {"fused": [B, D], <modality>:
      [B, D_m], ...}`` in eval mode.
    param_labels: ``(params, config) -> pytree of str``, the optimiser group
      of each leaf (default: every leaf ``"main"``).
    post_update: ``(params, config, step) -> params`` after each optimiser
      update (default: identity).
    requires_paired_rows: ``(config) -> bool``, whether every row of a batch
      must be one synchronized multimodal sample (default: ``True``).
    init_from_pretrained: ``(params, pretrained_params, config) -> params``
      for ``train.init_from`` (default: :func:`copy_matching`).
    predict: ``(variables, batch, config) -> {"fused": logits [B, C], ...}``,
      the method's own classifier, or ``None`` when it has none.
    align: ``(variables, batch, config) -> {m: [B, E]}``, the per-modality
      embeddings in the one space the objective aligns across modalities
      (for cross-modal retrieval, ``msjax.evaluation.retrieval``), or
      ``None`` when the method aligns none; fewer than two keys: nothing
      aligned in this config.
    sizes: the ``size`` values ``default_config`` accepts (default
      :data:`msjax.methods.config_checks.SIZES`; InfoMAE: tiny and base).
  """

  default_config: Callable[..., Config]
  init: Callable[[jax.Array, Config, Mapping[str, Any]], Variables]
  loss_fn: Callable[
    [Variables, Mapping[str, Any], jax.Array, Config, jax.Array],
    tuple[jax.Array, tuple[Variables, Metrics]],
  ]
  embed: Callable[[Variables, Mapping[str, Any], Config], dict[str, jax.Array]]
  _: dataclasses.KW_ONLY
  param_labels: Callable[[Any, Config], Any] = all_main_labels
  post_update: Callable[[Any, Config, jax.Array], Any] = identity_post_update
  requires_paired_rows: Callable[[Config], bool] = always_paired
  init_from_pretrained: Callable[[Any, Any, Config], Any] = copy_matching
  predict: (
    Callable[[Variables, Mapping[str, Any], Config], dict[str, jax.Array]]
    | None
  ) = None
  align: (
    Callable[[Variables, Mapping[str, Any], Config], dict[str, jax.Array]]
    | None
  ) = None
  sizes: tuple[str, ...] = SIZES
