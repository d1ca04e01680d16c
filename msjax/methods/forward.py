"""Applying a method's Flax model: initialisation, train and eval passes.

:func:`run_model` applies a module and returns its updated non-param
collections (``batch_stats``) in training; :func:`apply_to_views` and
:func:`apply_eval` are the checked train-mode (augmented views) and eval-mode
passes most methods' ``loss_fn`` and ``embed`` start with.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.methods.batch_checks import check_batch
from msjax.methods.key_streams import rng_streams
from msjax.methods.views import make_views

__all__ = [
  "apply_eval",
  "apply_to_views",
  "init_variables",
  "run_model",
  "with_fused",
]


def init_variables(
  model: nn.Module,
  rng: jax.Array,
  example_batch: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  *,
  min_modalities: int = 1,
) -> dict[str, Any]:
  """Checks ``example_batch`` and returns ``model``'s initial variables.

  The one ``init`` body of the methods whose model maps the signal dict to
  its outputs (``model.init(rng, signals, train=False)``).

  Args:
    model: the method's Flax module, called as ``model(signals, train=...)``.
    rng: the init key.
    example_batch: ``{"signals": {m: [B, ...]}, ...}``.
    config: the experiment config.
    min_modalities: the method needs at least this many modalities.

  Returns:
    ``{"params", ...}`` (plus ``"batch_stats"`` when the model has BatchNorm).
  """
  mods = check_batch(example_batch, config, min_modalities=min_modalities)
  signals = {m: jnp.asarray(example_batch["signals"][m]) for m in mods}
  return dict(model.init(rng, signals, train=False))


def run_model(
  model: nn.Module,
  variables: Mapping[str, Any],
  *args: Any,
  train: bool,
  rngs: Mapping[str, jax.Array] | None = None,
  **kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
  """Applies ``model``; in training returns the updated non-param state.

  Args:
    model: a Flax module.
    variables: ``{"params": ..., "batch_stats": ...}``.
    *args: positional call arguments.
    train: passed to the module; with ``True`` every non-params collection
      is mutable and returned updated.
    rngs: Flax rng streams (e.g. ``dropout``, ``gumbel``).
    **kwargs: keyword call arguments.

  Returns:
    ``(output, new_model_state)``; ``new_model_state`` is ``{}`` in eval mode
    or when the model has no state.
  """
  mutable = [c for c in variables if c != "params"] if train else []
  # Flax returns (output, state) for any list, the empty one too.
  result = model.apply(
    dict(variables),
    *args,
    train=train,
    rngs=rngs,
    mutable=mutable or False,
    **kwargs,
  )
  if not mutable:
    return result, {}
  out, state = result
  return out, dict(state)


def apply_to_views(
  model: nn.Module,
  variables: Mapping[str, Any],
  batch: Mapping[str, Any],
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  *,
  num_views: int = 1,
  min_modalities: int = 1,
  need_labels: bool = False,
) -> tuple[tuple[str, ...], Any, dict[str, Any]]:
  """Checks ``batch``, augments it and applies ``model`` in training mode.

  Args:
    model: the method's Flax module, called as ``model(views, train=True)``.
    variables: ``{"params", "batch_stats", ...}``.
    batch: ``{"signals": {m: [B, ...]}, ...}``.
    rng: the step key (streams ``augment`` for the views, ``dropout``).
    config: the experiment config (``loss.augment`` makes the views).
    num_views: ``V``; the model sees ``{m: [V * B, ...]}``, view-major.
    min_modalities: the method needs at least this many modalities.
    need_labels: the method reads ``batch["label"]``.

  Returns:
    ``(modalities, model output, new_model_state)``.
  """
  mods = check_batch(
    batch, config, min_modalities=min_modalities, need_labels=need_labels
  )
  streams = rng_streams(rng)
  views = make_views(
    streams["augment"],
    {m: batch["signals"][m] for m in mods},
    config.loss.augment,
    num_views,
  )
  out, state = run_model(
    model, variables, views, train=True, rngs={"dropout": streams["dropout"]}
  )
  return mods, out, state


def apply_eval(
  model: nn.Module,
  variables: Mapping[str, Any],
  batch: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  *,
  min_modalities: int = 1,
  **kwargs: Any,
) -> tuple[tuple[str, ...], Any]:
  """Checks ``batch`` and applies ``model`` in eval mode (no augmentation).

  Args:
    model: the method's Flax module, called as ``model(signals,
      train=False, **kwargs)``.
    variables: the model's variables.
    batch: ``{"signals": {m: [B, ...]}, ...}``.
    config: the experiment config.
    min_modalities: the method needs at least this many modalities.
    **kwargs: keyword call arguments of the model.

  Returns:
    ``(modalities, model output)``.
  """
  mods = check_batch(batch, config, min_modalities=min_modalities)
  signals = {m: jnp.asarray(batch["signals"][m]) for m in mods}
  out, _ = run_model(model, variables, signals, train=False, **kwargs)
  return mods, out


def with_fused(
  features: Mapping[str, jax.Array], mods: tuple[str, ...]
) -> dict[str, jax.Array]:
  """``{m: [B, F_m], "fused": concat_m [B, sum F_m]}`` in ``mods`` order."""
  return {
    "fused": jnp.concatenate([features[m] for m in mods], -1),
    **features,
  }
