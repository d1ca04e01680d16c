"""COCOA: cross-modality contrastive learning for sensor data.

Reference: Deldari, Xue, Saeed, Smith, Salim, "COCOA: Cross Modality
Contrastive Learning for Sensor Data", Proc. ACM IMWUT 6(3), 2022.

Model: per modality an encoder (``config.model.encoder``) giving
``h_m [B, F]`` and a projector to ``E``; ``z = n(proj(h)) [M, B, E]`` (``n``
the l2 normalisation, ``M >= 2``). Views are ``loss.augment`` of the raw
batch (COCOA uses none: ``ops=()`` by default).

Objective: a positive term pulls the modalities of one sample together
through their cross-correlation (cosine similarity), a negative term pushes
different samples of one modality apart::

  s_i^{mn}  = z[m, i] . z[n, i]                       (same sample i)
  s_m^{ij}  = z[m, i] . z[m, j]                       (same modality m)
  L_pos = mean_i mean_{m != n} exp((1 - s_i^{mn}) / tau)
  L_neg = sum_m mean_i mean_{j != i} exp(s_m^{ij} / tau)
  L     = L_pos + lambda * L_neg

(COCOA sums the positive term over the batch with a weight ``1 / 32`` and the
negative term over samples with a weight ``3.9e-3``; with batch means the
same balance at ``B = 32`` is ``lambda = 3.9e-3 * 32 ~= 0.125``.) The
``exp`` makes both terms steep: ``tau`` is COCOA's 0.1 at paper size and 0.5
in the tiny config (short runs).

:func:`embed`: the encoder features ``[B, F]`` per modality, ``"fused"``
their concatenation ``[B, M * F]``.

Metrics: ``loss/cocoa``, ``loss/cocoa_pos``, ``loss/cocoa_neg``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.norms import l2_normalize
from msjax.methods import encoders, forward
from msjax.methods.interface import Method
from msjax.methods.views import augment_config
from msjax.nn import MLPProjector

__all__ = [
  "METHOD",
  "COCOAModel",
  "cocoa_loss",
  "default_config",
  "embed",
  "init",
  "loss_fn",
]


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)`` with every key declared.
  """
  tiny = size == "tiny"
  model = encoders.encoder_model(size, projector=True)
  loss = dict(
    # COCOA's 0.1 at paper size; the tiny runs (a few hundred steps) learn
    # better with the flatter exp of 0.5 (exp(2 / tau) spans e^4, not e^20).
    tau=0.5 if tiny else 0.1,
    neg_weight=0.125,
    augment=augment_config(ops=()),
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class COCOAModel(encoders.ProjectorModel):
  """Per-modality encoders and projectors.

  Attributes:
    projector_hidden: hidden widths of each projector.
    embed_dim: ``E``.
  """

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Returns ``(features {m: [B, F]}, projections {m: [B, E]})``."""
    h = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    z = {
      m: MLPProjector(
        tuple(self.projector_hidden),
        self.embed_dim,
        use_bn=True,
        name=f"projector_{m}",
      )(h[m], train=train)
      for m in self.modalities
    }
    return h, z


def _model(config: ml_collections.ConfigDict) -> COCOAModel:
  return COCOAModel(
    **encoders.projector_fields(config),
  )


def cocoa_loss(
  z: jax.Array, *, tau: float, neg_weight: float
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """COCOA's objective ``L_pos + neg_weight * L_neg`` (module docstring).

  Args:
    z: ``[M, B, E]`` projections, ``M >= 2``, ``B >= 2`` (normalised
      inside).
    tau: temperature (> 0).
    neg_weight: ``lambda`` (>= 0).

  Returns:
    ``(loss [], (L_pos [], L_neg []))``.
  """
  if z.ndim != 3 or z.shape[0] < 2 or z.shape[1] < 2:
    raise ValueError(f"z must be [M >= 2, B >= 2, E], got {tuple(z.shape)}.")
  if not tau > 0 or neg_weight < 0:
    raise ValueError(f"need tau > 0, neg_weight >= 0: {tau}, {neg_weight}.")
  z = l2_normalize(z.astype(jnp.promote_types(z.dtype, jnp.float32)))
  num_mod, num = z.shape[:2]
  # [B, M, M] cross-modal similarities of each sample.
  cross = jnp.einsum("mbe,nbe->bmn", z, z, precision=jax.lax.Precision.HIGHEST)
  off_mod = ~jnp.eye(num_mod, dtype=bool)
  pos = jnp.sum(
    jnp.where(off_mod, jnp.exp((1.0 - cross) / tau), 0.0), axis=(1, 2)
  )
  l_pos = jnp.mean(pos) / (num_mod * (num_mod - 1))
  # [M, B, B] within-modality similarities across samples.
  within = jnp.einsum("mie,mje->mij", z, z, precision=jax.lax.Precision.HIGHEST)
  off_diag = ~jnp.eye(num, dtype=bool)
  neg = jnp.sum(jnp.where(off_diag, jnp.exp(within / tau), 0.0), axis=(1, 2))
  l_neg = jnp.sum(neg) / (num * (num - 1))
  return l_pos + neg_weight * l_neg, (l_pos, l_neg)


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  return forward.init_variables(
    _model(config), rng, example_batch, config, min_modalities=2
  )


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """COCOA's loss on one (unlabelled) batch.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, ...}`` (labels unused).
    rng: the step key (streams ``augment``, ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  mods, (_, z), state = forward.apply_to_views(
    _model(config), variables, batch, rng, config, min_modalities=2
  )
  loss, (l_pos, l_neg) = cocoa_loss(
    jnp.stack([z[m] for m in mods]),
    tau=config.loss.tau,
    neg_weight=config.loss.neg_weight,
  )
  metrics = {
    "loss/cocoa": loss,
    "loss/cocoa_pos": l_pos,
    "loss/cocoa_neg": l_neg,
  }
  return loss, (state, metrics)


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode encoder features ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  mods, (h, _) = forward.apply_eval(
    _model(config), variables, batch, config, min_modalities=2
  )
  return forward.with_fused(h, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed)
