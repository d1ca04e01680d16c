"""Pieces shared by the modality-balancing methods (AGM, MLA, MMPareto).

Private to :mod:`msjax.methods`. Each balancing method trains per-modality
encoders (:class:`msjax.methods.encoders.ModalityEncoders`, features
``[B, F]``) with labelled batches and embeds like the supervised
concatenation baseline: ``{m: [B, F], "fused": [B, M * F]}``.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from msjax.methods.encoders import encoder_model

__all__ = [
  "base_config",
  "check_classes",
  "cross_entropy",
  "scale_gradient",
]


def base_config(size: str, **loss: Any) -> ml_collections.ConfigDict:
  """``model`` (encoder, feature width, classes) and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.
    **loss: the method's ``loss`` keys.

  Returns:
    ``ConfigDict(model=..., loss=...)``; set ``model.num_classes``.
  """
  model = encoder_model(size, num_classes=3)
  return ml_collections.ConfigDict(dict(model=model, loss=dict(loss)))


def check_classes(config: ml_collections.ConfigDict) -> int:
  """``config.model.num_classes`` (``C >= 2``), checked."""
  num = int(config.model.num_classes)
  if num < 2:
    raise ValueError(f"model.num_classes must be >= 2, got {num}.")
  return num


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-row ``-log softmax(logits)[y]``: ``[B, C], [B] -> [B]``."""
  return optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), labels
  )


def scale_gradient(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Identity forward, gradient multiplied by ``stop_gradient(scale)``.

  ``x + s * (x - sg(x))`` has the value of ``x`` and the derivative ``s``.

  Args:
    x: any array.
    scale: a scalar (or broadcastable) factor; no gradient flows into it.

  Returns:
    ``x`` (same value, shape and dtype).
  """
  scale = jax.lax.stop_gradient(jnp.asarray(scale, x.dtype))
  frozen = jax.lax.stop_gradient(x)
  return frozen + scale * (x - frozen)
