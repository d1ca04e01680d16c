"""ProMoBal: prototype-guided multimodal balancing (SPEC §3).

Model: per modality an encoder (``config.model.encoder``: a 1-D ResNet on raw
sensor windows by default; ``"resnet18"`` is the paper's 2-D ResNet-18 for
spectrogram / image input) whose features ``[B, D]`` are l2-normalised into
the unimodal embeddings ``z [M, B, D]``; one linear classifier per modality on
``z``; one bank of ``C`` shared class prototypes ``P [C, D]`` (normalised
rows); the SaMoBal fusion (:class:`msjax.nn.SaMoBalFusion`).

Training loss (SPEC §3.6)::

  L = lam_uni * L_uni + lam_ce * L_CE + lam_fus * L_fus + lam_ca * L_CA

with ``L_uni`` Pro-UCL (§3.1), ``L_CE`` the mean unimodal cross-entropy,
``L_fus`` Pro-FD (§3.4) on the Gumbel straight-through fusion of §3.2 (noise
from the ``gumbel`` stream of the step key) and ``L_CA`` classifier alignment
(§3.5). Every batch row must carry a label in ``0..C-1`` (``C =
model.num_classes``, which must equal the data's class count).

Evaluation (:func:`embed`): ``{m: z[m]}`` and ``"fused"`` = the label-free
SaMoBal inference fusion of §3.3 (:func:`msjax.kernels.selection.
samobal_infer`); the fused prediction is ``fused @ P.T``.

Metrics: ``loss/uni``, ``loss/ce``, ``loss/fus``, ``loss/ca``,
``sel_rate/<m>`` (training selection rate, the paper's Table 2),
``geometry/FC`` and ``geometry/RS`` (§3.7, of the training fused embeddings),
``acc/fused`` (accuracy of the §3.3 inference on the batch) and
``acc/<m>`` (unimodal classifiers).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from msjax.kernels.contrastive import pro_ucl
from msjax.kernels.distillation import pro_fd
from msjax.kernels.geometry import ca_loss, fc_rs
from msjax.kernels.norms import l2_normalize
from msjax.kernels.selection import samobal_infer
from msjax.methods import encoders
from msjax.methods.batch_checks import check_batch
from msjax.methods.config_checks import check_choice, check_size
from msjax.methods.forward import apply_eval, init_variables, run_model
from msjax.methods.interface import Method
from msjax.methods.key_streams import rng_streams
from msjax.methods.views import augment_config, make_views
from msjax.nn import LinearClassifier, PrototypeBank, SaMoBalFusion

__all__ = [
  "METHOD",
  "LAMBDAS",
  "ProMoBalModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "predict",
]

#: Paper loss weights ``(lam_uni, lam_fus, lam_ca)`` per dataset (SPEC §3.6).
LAMBDAS = {
  "crema_d": (0.7, 1.0, 3.0),
  "nvgesture": (0.7, 1.0, 3.0),
  "sarcasm": (1.0, 1.0, 3.0),
  "twitter2015": (1.0, 1.0, 3.0),
  "kinetics_sounds": (1.0, 3.0, 3.0),
}


def default_config(
  size: str = "tiny", dataset: str = "crema_d"
) -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.
    dataset: a key of :data:`LAMBDAS` choosing the loss weights.

  Returns:
    ``ConfigDict(model=..., loss=...)`` with every key declared. Set
    ``model.num_classes`` to the data's class count.
  """
  check_size(size)
  check_choice(dataset, LAMBDAS, "dataset")
  tiny = size == "tiny"
  lam_uni, lam_fus, lam_ca = LAMBDAS[dataset]
  model = encoders.encoder_model(
    size,
    num_classes=3,
    fusion_mode="straight_through",
    infer_score="own",
  )
  loss = dict(
    lam_uni=lam_uni,
    lam_ce=1.0,
    lam_fus=lam_fus,
    lam_ca=lam_ca,
    tau=0.07,
    tau_g=1.0,
    select_scale=1.0,
    tau_fd=1.0,
    epsilon=0.1,
    sinkhorn_iters=5 if tiny else 20,
    augment=augment_config(ops=()),
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class ProMoBalModel(encoders.EncoderModel):
  """Encoders, unimodal classifiers, class prototypes and SaMoBal fusion.

  Attributes:
    num_classes: ``C``.
    fusion_mode: SaMoBal training selection (SPEC §3.2).
    tau_g: Gumbel-softmax temperature.
    select_scale: multiplies the training selection scores (SPEC: 1).
    infer_score: SaMoBal inference score, ``"own"`` or ``"bank_max"``.
  """

  num_classes: int
  fusion_mode: str
  tau_g: float
  select_scale: float
  infer_score: str

  @nn.compact
  def __call__(
    self,
    signals: dict[str, jax.Array],
    labels: jax.Array | None = None,
    *,
    train: bool,
  ) -> dict[str, Any]:
    """Embeds, classifies and fuses.

    Args:
      signals: ``{m: [B, C_m, ...]}``.
      labels: ``int [B]`` classes (training fusion only).
      train: training mode (BatchNorm statistics, Gumbel selection).

    Returns:
      ``{"z": [M, B, D], "logits": [M, B, C], "prototypes": [C, D],
      "z_fus": [B, D], "fusion": aux of SaMoBalFusion}``.
    """
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    z = jnp.stack([l2_normalize(features[m]) for m in self.modalities])
    logits = jnp.stack(
      [
        LinearClassifier(self.num_classes, name=f"classifier_{m}")(z[i])
        for i, m in enumerate(self.modalities)
      ]
    )
    protos = PrototypeBank(
      self.num_classes, self.feature_dim, name="prototypes"
    )().prototypes
    fusion = SaMoBalFusion(
      mode=self.fusion_mode,
      tau_g=self.tau_g,
      score_scale=self.select_scale,
      score=self.infer_score,
    )
    z_fus, aux = fusion(z, protos, labels, train=train)
    return dict(z=z, logits=logits, prototypes=protos, z_fus=z_fus, fusion=aux)


def _model(config: ml_collections.ConfigDict) -> ProMoBalModel:
  c = config.model
  check_choice(
    c.fusion_mode, ("straight_through", "soft", "hard"), "model.fusion_mode"
  )
  check_choice(c.infer_score, ("own", "bank_max"), "model.infer_score")
  if c.num_classes < 2:
    raise ValueError(f"model.num_classes must be >= 2, got {c.num_classes}.")
  return ProMoBalModel(
    **encoders.encoder_fields(config),
    num_classes=int(c.num_classes),
    fusion_mode=c.fusion_mode,
    tau_g=float(config.loss.tau_g),
    # .get: configs saved before the option existed
    select_scale=float(config.loss.get("select_scale", 1.0)),
    infer_score=c.infer_score,
  )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  return init_variables(
    _model(config), rng, example_batch, config, min_modalities=2
  )


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """ProMoBal's total loss (SPEC §3.6) on one labelled batch.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, "label": int [B] in 0..C-1}``.
    rng: the step key (streams ``augment``, ``dropout``, ``gumbel``).
    config: the experiment config.
    step: traced int32 step (unused: no schedule inside the loss).

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  mods = check_batch(batch, config, min_modalities=2, need_labels=True)
  c = config.loss
  streams = rng_streams(rng)
  signals = make_views(
    streams["augment"], {m: batch["signals"][m] for m in mods}, c.augment, 1
  )
  labels = jnp.asarray(batch["label"], jnp.int32)
  out, state = run_model(
    _model(config),
    variables,
    signals,
    labels,
    train=True,
    rngs={"dropout": streams["dropout"], "gumbel": streams["gumbel"]},
  )
  z, protos = out["z"], out["prototypes"]
  l_uni, _ = pro_ucl(z, labels, protos, tau=c.tau)
  logits = out["logits"]  # [M, B, C]
  ce = optax.softmax_cross_entropy_with_integer_labels(
    logits, jnp.broadcast_to(labels, logits.shape[:-1])
  )
  l_ce = jnp.mean(ce)
  l_fus, _ = pro_fd(
    out["z_fus"],
    labels,
    protos,
    tau_fd=c.tau_fd,
    epsilon=c.epsilon,
    num_iters=int(c.sinkhorn_iters),
  )
  params = variables["params"]
  weights = jnp.stack([params[f"classifier_{m}"]["weight"] for m in mods])
  l_ca, _ = ca_loss(weights, protos)
  loss = c.lam_uni * l_uni + c.lam_ce * l_ce + c.lam_fus * l_fus
  loss = loss + c.lam_ca * l_ca
  metrics = {
    "loss/uni": l_uni,
    "loss/ce": l_ce,
    "loss/fus": l_fus,
    "loss/ca": l_ca,
    **_eval_metrics(out, labels, mods, int(config.model.num_classes), config),
  }
  return loss, (state, metrics)


def _eval_metrics(
  out: dict[str, Any],
  labels: jax.Array,
  mods: tuple[str, ...],
  num_classes: int,
  config: ml_collections.ConfigDict,
) -> dict[str, jax.Array]:
  """Selection rates, FC/RS and accuracies (no gradient)."""
  out = jax.lax.stop_gradient(out)
  fc, rs, _ = fc_rs(out["z_fus"], labels, num_classes=num_classes)
  infer = samobal_infer(
    out["z"], out["prototypes"], score=config.model.infer_score
  )
  metrics = {
    "geometry/FC": fc,
    "geometry/RS": rs,
    "acc/fused": jnp.mean(infer.cls == labels),
  }
  for i, m in enumerate(mods):
    metrics[f"sel_rate/{m}"] = out["fusion"]["sel_rate"][i]
    hits = jnp.argmax(out["logits"][i], axis=-1) == labels
    metrics[f"acc/{m}"] = jnp.mean(hits)
  return metrics


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: z[m] [B, D]}`` and ``"fused"``: SaMoBal inference."""
  mods, out = apply_eval(
    _model(config), variables, batch, config, min_modalities=2
  )
  return {"fused": out["z_fus"], **{m: out["z"][i] for i, m in enumerate(mods)}}


def predict(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """ProMoBal's own predictions (eval mode): logits ``[B, C]`` per key.

  ``"fused"``: SPEC §3.3 inference, ``z_fus @ P.T`` (the paper's fused
  prediction); ``<m>``: modality ``m``'s linear classifier on ``z[m]``;
  ``"classifiers"``: the sum of the modalities' classifier logits (not in
  SPEC: on the built-in data's balanced setting it scored about 0.012
  above ``"fused"`` on 18 of 20 seeds, docs/claims.md).
  """
  mods, out = apply_eval(
    _model(config), variables, batch, config, min_modalities=2
  )
  fused = out["z_fus"] @ out["prototypes"].T
  return {
    "fused": fused,
    **{m: out["logits"][i] for i, m in enumerate(mods)},
    "classifiers": jnp.sum(out["logits"], axis=0),
  }


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed, predict=predict)
