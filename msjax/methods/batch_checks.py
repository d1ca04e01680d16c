"""The batch check every method runs at trace time (one-line errors)."""

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import ml_collections

from msjax.methods.config_checks import check_choice, modalities
from msjax.methods.encoders import ENCODERS

__all__ = ["check_batch"]


def check_batch(
  batch: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  *,
  min_modalities: int = 1,
  need_labels: bool = False,
) -> tuple[str, ...]:
  """Checks a batch against the config at trace time.

  Args:
    batch: ``{"signals": {m: [B, ...]}, "label": int [B], ...}``.
    config: the experiment config (``data.modalities``, ``model.encoder``).
    min_modalities: the method needs at least this many modalities.
    need_labels: the method reads ``batch["label"]``.

  Returns:
    The modality names, in config order.

  Raises:
    ValueError: naming the missing key, bad rank or batch-size mismatch.
  """
  mods = modalities(config)
  if len(mods) < min_modalities:
    raise ValueError(
      f"this method needs >= {min_modalities} modalities in "
      f"config.data.modalities, got {mods}."
    )
  check_choice(config.model.encoder, ENCODERS, "config.model.encoder")
  signals = batch.get("signals") if isinstance(batch, Mapping) else None
  if not isinstance(signals, Mapping):
    raise ValueError("batch must be a dict with a 'signals' dict.")
  missing = [m for m in mods if m not in signals]
  if missing:
    raise ValueError(
      f"batch['signals'] lacks modalities {missing} named in "
      f"config.data.modalities (has {sorted(signals)})."
    )
  rank = ENCODERS[config.model.encoder].input_rank + 1
  sizes = set()
  for m in mods:
    shape = jnp.shape(signals[m])
    if len(shape) != rank:
      raise ValueError(
        f"batch['signals'][{m!r}] must have rank {rank} for encoder "
        f"{config.model.encoder!r}, got shape {tuple(shape)}."
      )
    sizes.add(shape[0])
  if need_labels:
    if "label" not in batch:
      raise ValueError("this method is supervised: batch needs 'label' [B].")
    label_shape = jnp.shape(batch["label"])
    if len(label_shape) != 1:
      raise ValueError(f"batch['label'] must be [B], got {label_shape}.")
    sizes.add(label_shape[0])
  if len(sizes) != 1:
    raise ValueError(f"batch arrays disagree on the batch size: {sizes}.")
  return mods
