"""GMC: geometric multimodal contrastive learning.

Reference: Poklukar, Vasco, Yin, Melo, Paiva, Kragic, "Geometric Multimodal
Contrastive Representation Learning", ICML 2022.

Model: per modality an encoder ``f_m`` (``config.model.encoder``) giving
``h_m [B, F]``; a joint encoder ``f_{1:M}`` over all modalities (its own
per-modality encoders, concatenated ``[B, M * F]``, then ``Dense(F)``) giving
``h_joint [B, F]``; one projection head ``g`` shared by every input (an MLP
to ``E``, no BatchNorm, so the modalities and the joint input do not share
batch statistics). ``z_m = g(h_m) [B, E]``, ``z_joint = g(h_joint) [B, E]``.

Objective (GMC's contrastive loss, NT-Xent between each modality and the
joint representation): with ``u = concat(n(z_m), n(z_joint)) [2B, E]``
(``n`` the l2 normalisation) and ``s = u u^T / tau [2B, 2B]``, anchor
``a``'s positive is the same sample in the other half (``pos(a) = a +- B``)
and its negatives the ``2B - 2`` other rows::

  L_m = mean_{a < 2B} -(s[a, pos(a)] - log sum_{b != a} exp s[a, b])
  L   = sum_m L_m                                  (m over the M modalities)

(:func:`msjax.kernels.nt_xent`). Views are ``loss.augment`` of the raw
batch (GMC itself uses none: ``ops=()`` by default).

:func:`embed`: the modality features ``h_m [B, F]``, ``"fused"`` their
concatenation ``[B, M * F]`` and ``"joint"`` the joint encoder's
``h_joint [B, F]``.

Metrics: ``loss/gmc`` and ``loss/gmc/<m>`` (``L_m``).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.contrastive import nt_xent
from msjax.methods import encoders, forward
from msjax.methods.interface import Method
from msjax.methods.views import augment_config
from msjax.nn import MLPProjector

__all__ = [
  "METHOD",
  "GMCModel",
  "default_config",
  "embed",
  "gmc_loss",
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
  model = encoders.encoder_model(size, projector=True)
  loss = dict(tau=0.1, augment=augment_config(ops=()))
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class GMCModel(encoders.ProjectorModel):
  """Modality encoders, the joint encoder and the shared projection head.

  Attributes:
    projector_hidden: hidden widths of the shared head ``g``.
    embed_dim: ``E``.
  """

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Returns ``(h, z)``: ``{m: [B, F], "joint": [B, F]}`` and ``[B, E]``s.

    Args:
      signals: ``{m: [B, C_m, ...]}``.
      train: BatchNorm batch statistics (True) or running averages.
    """
    h = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    joint_parts = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="joint_encoders",
    )(signals, train=train)
    joint_in = jnp.concatenate([joint_parts[m] for m in self.modalities], -1)
    h = {**h, "joint": nn.Dense(self.feature_dim, name="joint_head")(joint_in)}
    head = MLPProjector(
      tuple(self.projector_hidden), self.embed_dim, name="projector"
    )
    return h, {k: head(v, train=train) for k, v in h.items()}


def _model(config: ml_collections.ConfigDict) -> GMCModel:
  return GMCModel(
    **encoders.projector_fields(config),
  )


def gmc_loss(
  z_modalities: jax.Array, z_joint: jax.Array, *, tau: float
) -> tuple[jax.Array, jax.Array]:
  """GMC's objective: ``sum_m nt_xent(z_m, z_joint)``.

  Args:
    z_modalities: ``[M, B, E]`` modality projections (normalised inside).
    z_joint: ``[B, E]`` joint projections (normalised inside).
    tau: temperature (> 0).

  Returns:
    ``(loss [], per_modality [M])``.
  """
  if z_modalities.ndim != 3 or z_modalities.shape[1:] != z_joint.shape:
    raise ValueError(
      f"z_modalities must be [M, B, E] and z_joint [B, E], got shapes "
      f"{tuple(z_modalities.shape)} and {tuple(z_joint.shape)}."
    )
  per_modality = jnp.stack(
    [nt_xent(z_m, z_joint, tau=tau) for z_m in z_modalities]
  )
  return jnp.sum(per_modality), per_modality


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
  """GMC's loss on one (unlabelled) batch.

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
  loss, per_mod = gmc_loss(
    jnp.stack([z[m] for m in mods]), z["joint"], tau=config.loss.tau
  )
  metrics = {f"loss/gmc/{m}": per_mod[i] for i, m in enumerate(mods)}
  return loss, (state, {"loss/gmc": loss, **metrics})


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, F]}``, ``"fused" [B, M * F]``, ``"joint" [B, F]``."""
  mods, (h, _) = forward.apply_eval(
    _model(config), variables, batch, config, min_modalities=2
  )
  return forward.with_fused(h, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed)
