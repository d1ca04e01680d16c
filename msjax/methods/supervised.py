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

from msjax.methods import encoders
from msjax.methods.batch_checks import check_batch
from msjax.methods.config_checks import check_choice
from msjax.methods.forward import apply_eval, init_variables, run_model
from msjax.methods.key_streams import rng_streams
from msjax.methods.views import augment_config, make_views
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
  model = encoders.encoder_model(
    size,
    num_classes=3,
  )
  loss = dict(
    label_smoothing=0.0,
    augment=augment_config(ops=()),
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class SupervisedModel(encoders.EncoderModel):
  """Encoders, a fusion and a linear classifier.

  Attributes:
    num_classes: ``C``.
    fusion: ``"concat"`` or ``"sum"``.
  """

  num_classes: int
  fusion: str

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], jax.Array]:
    """Returns ``({m: [B, F], "fused": h}, logits [B, C])``."""
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    parts = [features[m] for m in self.modalities]
    if self.fusion == "concat":
      fused = jnp.concatenate(parts, axis=-1)
    else:
      fused = sum(parts[1:], parts[0])
    logits = LinearClassifier(self.num_classes, name="classifier")(fused)
    return {"fused": fused, **features}, logits


def _model(config: ml_collections.ConfigDict, fusion: str) -> SupervisedModel:
  check_choice(fusion, FUSIONS, "fusion")
  if config.model.num_classes < 2:
    raise ValueError(
      f"model.num_classes must be >= 2, got {config.model.num_classes}."
    )
  return SupervisedModel(
    **encoders.encoder_fields(config),
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
  return init_variables(_model(config, fusion), rng, example_batch, config)


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
  mods = check_batch(batch, config, need_labels=True)
  streams = rng_streams(rng)
  signals = make_views(
    streams["augment"],
    {m: batch["signals"][m] for m in mods},
    config.loss.augment,
    1,
  )
  labels = jnp.asarray(batch["label"], jnp.int32)
  (_, logits), state = run_model(
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
  mods, outputs = apply_eval(_model(config, fusion), variables, batch, config)
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
