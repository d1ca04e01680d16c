"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement.

Peng, Wei, Deng, Wang and Hu, "Balanced Multimodal Learning via On-the-fly
Gradient Modulation", CVPR 2022. A supervised concatenation-fusion model
(the parameters of :mod:`msjax.methods.supervised`'s ``concat`` variant:
``encoders``, ``classifier``) whose encoders learn at rates set, every step,
by how far each modality already leads.

With features ``f_m [B, F]``, the classifier ``W = [W_1 .. W_M]``
(``W_m [C, F]``) and bias ``b [C]``, the fused logits are
``sum_m W_m f_m + b``. On each batch (labels ``y [B]``; no gradient through
this part)::

  s_m   = sum_b softmax(W_m f_m[b] + b / M)[y_b]   # confidence of m
  rho_m = s_m / mean_{m' != m} s_m'                 # its lead (s_a / s_v)
  k_m   = 1 - tanh(alpha * relu(rho_m - 1))         # 1 unless m leads

The cross-entropy's gradient reaching modality ``m``'s encoder is multiplied
by ``k_m`` (OGM). Generalisation enhancement (GE) adds zero-mean Gaussian
noise whose standard deviation is that of the modulated gradient. msjax
applies both to the cotangent of the features ``f_m`` (the gradient that
enters encoder ``m``), so the whole method stays inside ``loss_fn``; the
paper scales and perturbs the encoder's parameter gradients, which the
feature cotangent determines linearly. The noise comes from the ``gumbel``
stream of the step key (``loss.ge = False`` turns GE off).

Metrics: ``loss/ce``, ``acc/fused``, ``ogm/coeff/<m>`` (``k_m``),
``ogm/score/<m>`` (``s_m / B``). Evaluation as ``supervised_concat``:
:func:`embed` (features, ``"fused"`` their concatenation) and
:func:`predict` (the fused classifier's logits).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from msjax.methods import encoders, supervised
from msjax.methods.batch_checks import check_batch
from msjax.methods.forward import run_model
from msjax.methods.interface import Method
from msjax.methods.key_streams import rng_streams
from msjax.methods.views import make_views
from msjax.nn import LinearClassifier

__all__ = [
  "METHOD",
  "OGMModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "modulation_coefficients",
  "predict",
]


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """``model`` as supervised concat; ``loss`` adds ``alpha`` and ``ge``.

  Args:
    size: ``"tiny"`` or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)`` (set ``model.num_classes``).
  """
  sections = supervised.default_config(size)
  sections.loss.alpha = 0.1 if size == "tiny" else 0.1
  sections.loss.ge = True
  return sections


@functools.partial(jax.custom_vjp)
def _modulate(f: jax.Array, k: jax.Array, noise: jax.Array) -> jax.Array:
  """Identity on ``f``; backward ``k * g + noise * std(k * g)``."""
  del k, noise
  return f


def _modulate_fwd(f, k, noise):
  return f, (k, noise)


def _modulate_bwd(res, g):
  k, noise = res
  scaled = k * g
  return (
    scaled + noise * jnp.std(scaled),
    jnp.zeros_like(k),
    jnp.zeros_like(noise),
  )


_modulate.defvjp(_modulate_fwd, _modulate_bwd)


def modulation_coefficients(
  partial_logits: jax.Array, labels: jax.Array, alpha: float
) -> tuple[jax.Array, jax.Array]:
  """OGM's ``k_m`` from per-modality logits.

  Args:
    partial_logits: ``[M, B, C]``, ``W_m f_m + b / M``.
    labels: ``int [B]``.
    alpha: modulation strength.

  Returns:
    ``(k [M], s [M])``: coefficients in ``(0, 1]`` and the confidences
    ``s_m = sum_b softmax(...)[y_b]``.
  """
  num = partial_logits.shape[0]
  if num < 2:
    raise ValueError("OGM-GE needs at least two modalities.")
  probs = jax.nn.softmax(partial_logits, axis=-1)
  s = jnp.sum(jnp.take_along_axis(probs, labels[None, :, None], -1), (1, 2))
  others = (jnp.sum(s) - s) / (num - 1)
  rho = s / jnp.maximum(others, jnp.finfo(s.dtype).tiny)
  k = 1.0 - jnp.tanh(alpha * jax.nn.relu(rho - 1.0))
  return k, s


class OGMModel(encoders.EncoderModel):
  """Supervised concat fusion with modulated encoder gradients.

  Same parameter tree as :class:`msjax.methods.supervised.SupervisedModel`
  (``encoders``, ``classifier``).

  Attributes:
    num_classes: ``C``.
    alpha: modulation strength.
    ge: add GE noise.
  """

  num_classes: int
  alpha: float
  ge: bool

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], labels: jax.Array, *, train: bool
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns ``(fused logits [B, C], {"coeff": k [M], "score": s [M]})``."""
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    classifier = LinearClassifier(self.num_classes, name="classifier")
    width = self.feature_dim
    num = len(self.modalities)
    parts = [features[m] for m in self.modalities]
    # Parameters come from supervised.init (the same tree), so the
    # classifier exists before this call reads it.
    params = jax.lax.stop_gradient(classifier.variables["params"])
    weight, bias = params["weight"], params["bias"]
    partial = jnp.stack(
      [
        jax.lax.stop_gradient(f) @ weight[:, i * width : (i + 1) * width].T
        + bias / num
        for i, f in enumerate(parts)
      ]
    )
    k, s = modulation_coefficients(partial, labels, self.alpha)
    key = self.make_rng("gumbel")
    modulated = []
    for i, f in enumerate(parts):
      noise = (
        jax.random.normal(jax.random.fold_in(key, i), f.shape, f.dtype)
        if self.ge
        else jnp.zeros_like(f)
      )
      modulated.append(_modulate(f, k[i].astype(f.dtype), noise))
    logits = classifier(jnp.concatenate(modulated, -1))
    return logits, {"coeff": k, "score": s / labels.shape[0]}


def _model(config: ml_collections.ConfigDict) -> OGMModel:
  if config.model.num_classes < 2:
    raise ValueError(
      f"model.num_classes must be >= 2, got {config.model.num_classes}."
    )
  if config.loss.alpha < 0:
    raise ValueError(f"loss.alpha must be >= 0, got {config.loss.alpha}.")
  return OGMModel(
    **encoders.encoder_fields(config),
    num_classes=int(config.model.num_classes),
    alpha=float(config.loss.alpha),
    ge=bool(config.loss.ge),
  )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables: those of supervised concat (same tree)."""
  return supervised.init(rng, config, example_batch, fusion="concat")


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """Cross-entropy of the fused classifier with modulated encoder gradients.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, "label": int [B] in 0..C-1}``.
    rng: the step key (streams ``augment``, ``dropout``, ``gumbel``: GE).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  mods = check_batch(batch, config, min_modalities=2, need_labels=True)
  streams = rng_streams(rng)
  signals = make_views(
    streams["augment"],
    {m: batch["signals"][m] for m in mods},
    config.loss.augment,
    1,
  )
  labels = jnp.asarray(batch["label"], jnp.int32)
  (logits, aux), state = run_model(
    _model(config),
    variables,
    signals,
    labels,
    train=True,
    rngs={"dropout": streams["dropout"], "gumbel": streams["gumbel"]},
  )
  loss = jnp.mean(
    optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  )
  hits = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1) == labels
  metrics = {"loss/ce": loss, "acc/fused": jnp.mean(hits)}
  for i, m in enumerate(mods):
    metrics[f"ogm/coeff/{m}"] = aux["coeff"][i]
    metrics[f"ogm/score/{m}"] = aux["score"][i]
  return loss, (state, metrics)


embed = functools.partial(supervised.embed, fusion="concat")
predict = functools.partial(supervised.predict, fusion="concat")

#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed, predict=predict)
