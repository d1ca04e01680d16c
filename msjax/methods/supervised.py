"""Supervised late-fusion baselines: concatenation and sum fusion.

Per modality an encoder (``config.model.encoder``) gives features ``[B, F]``;
``fusion`` combines them into ``h`` (``"concat"``: ``[B, M * F]``, ``"sum"``:
``sum_m`` of the features, ``[B, F]``); a linear classifier on ``h`` is
trained with cross-entropy on ``batch["label"]`` (every row labelled,
``0..C-1``). The fusion is fixed by the method entry
(``msjax.methods.baselines.supervised_concat`` / ``supervised_sum``), bound
with ``functools.partial``, not read from the config.

:func:`embed` returns the per-modality features and ``"fused" = h``.
Metrics: ``loss/ce``, ``acc/fused`` (training-batch accuracy).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from msjax.methods import _common
from msjax.nn import LinearClassifier

__all__ = [
  "FUSIONS",
  "SupervisedModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "predict",
]

FUSIONS = ("concat", "sum")


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections (set ``model.num_classes``).

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)`` with every key declared.
  """
  _common.check_choice(size, ("tiny", "paper"), "size")
  tiny = size == "tiny"
  model = dict(
    encoder="resnet1d_tiny" if tiny else "resnet1d26",
    feature_dim=16 if tiny else 512,
    num_classes=3,
  )
  loss = dict(
    label_smoothing=0.0,
    augment=_common.augment_config(ops=()),
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class SupervisedModel(nn.Module):
  """Encoders, a fusion and a linear classifier.

  Attributes:
    modalities: modality names, in config order.
    encoder: a key of :data:`msjax.methods._common.ENCODERS`.
    feature_dim: ``F``.
    num_classes: ``C``.
    fusion: ``"concat"`` or ``"sum"``.
  """

  modalities: tuple[str, ...]
  encoder: str
  feature_dim: int
  num_classes: int
  fusion: str

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], jax.Array]:
    """Returns ``({m: [B, F], "fused": h}, logits [B, C])``."""
    features = _common.ModalityEncoders(
      self.modalities, self.encoder, self.feature_dim, name="encoders"
    )(signals, train=train)
    parts = [features[m] for m in self.modalities]
    if self.fusion == "concat":
      fused = jnp.concatenate(parts, axis=-1)
    else:
      fused = sum(parts[1:], parts[0])
    logits = LinearClassifier(self.num_classes, name="classifier")(fused)
    return {"fused": fused, **features}, logits


def _model(config: ml_collections.ConfigDict, fusion: str) -> SupervisedModel:
  _common.check_choice(fusion, FUSIONS, "fusion")
  if config.model.num_classes < 2:
    raise ValueError(
      f"model.num_classes must be >= 2, got {config.model.num_classes}."
    )
  return SupervisedModel(
    modalities=_common.modalities(config),
    encoder=config.model.encoder,
    feature_dim=int(config.model.feature_dim),
    num_classes=int(config.model.num_classes),
    fusion=fusion,
  )


def init(
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  example_batch: dict,
  *,
  fusion: str,
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  return _common.init_variables(
    _model(config, fusion), rng, example_batch, config
  )


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
  *,
  fusion: str,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """Cross-entropy of the fused classifier on one labelled batch.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, "label": int [B] in 0..C-1}``.
    rng: the step key (streams ``augment``, ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).
    fusion: ``"concat"`` or ``"sum"``.

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  mods = _common.check_batch(batch, config, need_labels=True)
  streams = _common.rng_streams(rng)
  signals = _common.make_views(
    streams["augment"],
    {m: batch["signals"][m] for m in mods},
    config.loss.augment,
    1,
  )
  labels = jnp.asarray(batch["label"], jnp.int32)
  (_, logits), state = _common.run_model(
    _model(config, fusion),
    variables,
    signals,
    train=True,
    rngs={"dropout": streams["dropout"]},
  )
  targets = optax.smooth_labels(
    jax.nn.one_hot(labels, logits.shape[-1]), config.loss.label_smoothing
  )
  loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
  hits = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1) == labels
  metrics = {"loss/ce": loss, "acc/fused": jnp.mean(hits)}
  return loss, (state, metrics)


def _eval_outputs(
  variables: dict[str, Any],
  batch: dict,
  config: ml_collections.ConfigDict,
  fusion: str,
) -> tuple[dict[str, jax.Array], jax.Array]:
  """Eval-mode ``(features incl. "fused", logits [B, C])``."""
  mods = _common.check_batch(batch, config)
  signals = {m: jnp.asarray(batch["signals"][m]) for m in mods}
  outputs, _ = _common.run_model(
    _model(config, fusion), variables, signals, train=False
  )
  return outputs


def embed(
  variables: dict[str, Any],
  batch: dict,
  config: ml_collections.ConfigDict,
  *,
  fusion: str,
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, F]}`` and ``"fused"`` (``[B, M*F]`` or ``[B, F]``)."""
  return _eval_outputs(variables, batch, config, fusion)[0]


def predict(
  variables: dict[str, Any],
  batch: dict,
  config: ml_collections.ConfigDict,
  *,
  fusion: str,
) -> dict[str, jax.Array]:
  """The model's own classifier in eval mode: ``{"fused": logits [B, C]}``."""
  return {"fused": _eval_outputs(variables, batch, config, fusion)[1]}
