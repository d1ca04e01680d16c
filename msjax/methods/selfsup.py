"""Self-supervised baselines: CLIP-style, SimCLR per modality, joint SimCLR.

All three share the model: per modality an encoder (``config.model.encoder``)
giving features ``[B, F]``, then projectors to ``E``. The ``variant`` is fixed
by the method entry in :mod:`msjax.methods.baselines` (bound with
``functools.partial``, not read from the config):

* ``"clip"``: one augmented view per modality, a projector per modality;
  ``L = mean over unordered modality pairs (a, b) of info_nce(p_a, p_b)``
  (SPEC §5; CMC for more than two modalities). Metric ``loss/clip``.
* ``"simclr"``: two augmented views per modality, a projector per modality;
  ``L = mean_m nt_xent(p_m, p'_m)`` (SPEC §4.3). Metrics ``loss/simclr`` and
  ``loss/simclr/<m>``.
* ``"slip"``: SLIP (Mu et al., "SLIP: Self-supervision meets Language-Image
  Pre-training", ECCV 2022) with modalities in place of image and text: two
  augmented views per modality; CLIP projectors ``p_m`` and separate
  SimCLR projectors ``r_m`` (``simclr_projector_<m>``) on the same features;
  ``L = mean_v mean_(a,b) info_nce(p_a^v, p_b^v) + loss.simclr_weight *
  mean_m nt_xent(r_m, r'_m)``. Metrics ``loss/clip``, ``loss/simclr``.
* ``"joint"``: joint multimodal pretraining (InfoMAE's comparison): two
  augmented views of the whole multimodal sample, the concatenated
  per-modality features ``[B, M * F]`` go through one joint projector, and
  ``L = nt_xent(p_joint, p'_joint)`` -- one objective on the joint
  representation, no per-modality term. Metric ``loss/joint``.

:func:`embed`: per-modality encoder features and ``"fused"`` their
concatenation ``[B, M * F]`` (projectors discarded).
"""

import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.contrastive import info_nce, nt_xent
from msjax.methods import encoders, forward
from msjax.methods.config_checks import check_choice, check_size
from msjax.methods.views import augment_config
from msjax.nn import MLPProjector

__all__ = [
  "VARIANTS",
  "SelfSupModel",
  "align",
  "default_config",
  "embed",
  "init",
  "loss_fn",
]

#: variant -> number of augmented views.
VARIANTS = {"clip": 1, "simclr": 2, "joint": 2, "slip": 2}
#: variants with a cross-modal term (need two modalities, synchronized rows).
_CROSS_MODAL = ("clip", "slip")


def default_config(
  size: str = "tiny", *, variant: str
) -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.
    variant: a key of :data:`VARIANTS`.

  Returns:
    ``ConfigDict(model=..., loss=...)`` with every key declared.
  """
  check_size(size)
  check_choice(variant, VARIANTS, "variant")
  model = encoders.encoder_model(size, projector=True)
  loss = dict(
    tau=0.1,
    augment=augment_config(
      ("jitter", "negation", "channel_shuffle", "time_mask")
    ),
  )
  if variant == "slip":
    loss["simclr_weight"] = 1.0
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class SelfSupModel(encoders.ProjectorModel):
  """Encoders and projectors (per modality, or one joint projector).

  Attributes:
    projector_hidden: hidden widths of the projector(s).
    embed_dim: ``E``.
    joint: one projector on the concatenated features (else one per
      modality).
    simclr_heads: also a SimCLR projector per modality (SLIP).
  """

  joint: bool
  simclr_heads: bool = False

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Returns ``(features {m: [N, F]}, projections)``.

    ``projections`` is ``{m: [N, E]}``, or ``{"joint": [N, E]}`` when
    ``joint``; with ``simclr_heads`` also ``{"<m>/simclr": [N, E]}``.
    """
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    hidden = tuple(self.projector_hidden)
    if self.joint:
      fused = jnp.concatenate([features[m] for m in self.modalities], -1)
      proj = MLPProjector(hidden, self.embed_dim, use_bn=True, name="projector")
      return features, {"joint": proj(fused, train=train)}
    projections = {
      m: MLPProjector(
        hidden, self.embed_dim, use_bn=True, name=f"projector_{m}"
      )(features[m], train=train)
      for m in self.modalities
    }
    if self.simclr_heads:
      for m in self.modalities:
        projections[f"{m}/simclr"] = MLPProjector(
          hidden, self.embed_dim, use_bn=True, name=f"simclr_projector_{m}"
        )(features[m], train=train)
    return features, projections


def _model(config: ml_collections.ConfigDict, variant: str) -> SelfSupModel:
  check_choice(variant, VARIANTS, "variant")
  return SelfSupModel(
    **encoders.projector_fields(config),
    joint=variant == "joint",
    simclr_heads=variant == "slip",
  )


def init(
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  example_batch: dict,
  *,
  variant: str,
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  return forward.init_variables(
    _model(config, variant),
    rng,
    example_batch,
    config,
    min_modalities=2 if variant in _CROSS_MODAL else 1,
  )


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
  *,
  variant: str,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """The variant's contrastive loss on one (unlabelled) batch.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, ...}`` (labels unused).
    rng: the step key (streams ``augment``, ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).
    variant: a key of :data:`VARIANTS`.

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  mods, (_, proj), state = forward.apply_to_views(
    _model(config, variant),
    variables,
    batch,
    rng,
    config,
    num_views=VARIANTS[variant],
    min_modalities=2 if variant in _CROSS_MODAL else 1,
  )
  tau = config.loss.tau
  if variant == "clip":
    pairs = [
      info_nce(proj[a], proj[b], tau=tau)
      for a, b in itertools.combinations(mods, 2)
    ]
    loss = jnp.mean(jnp.stack(pairs))
    return loss, (state, {"loss/clip": loss})
  if variant == "slip":
    clip_terms = [
      info_nce(pa, pb, tau=tau)
      for a, b in itertools.combinations(mods, 2)
      for pa, pb in zip(
        jnp.split(proj[a], 2), jnp.split(proj[b], 2), strict=True
      )
    ]
    clip_loss = jnp.mean(jnp.stack(clip_terms))
    simclr_loss = jnp.mean(
      jnp.stack(
        [nt_xent(*jnp.split(proj[f"{m}/simclr"], 2), tau=tau) for m in mods]
      )
    )
    loss = clip_loss + config.loss.simclr_weight * simclr_loss
    metrics = {"loss/clip": clip_loss, "loss/simclr": simclr_loss}
    return loss, (state, {"loss/slip": loss, **metrics})
  if variant == "joint":
    first, second = jnp.split(proj["joint"], 2)
    loss = nt_xent(first, second, tau=tau)
    return loss, (state, {"loss/joint": loss})
  per_mod = {m: nt_xent(*jnp.split(proj[m], 2), tau=tau) for m in mods}
  loss = jnp.mean(jnp.stack(list(per_mod.values())))
  metrics = {f"loss/simclr/{m}": v for m, v in per_mod.items()}
  return loss, (state, {"loss/simclr": loss, **metrics})


def embed(
  variables: dict[str, Any],
  batch: dict,
  config: ml_collections.ConfigDict,
  *,
  variant: str,
) -> dict[str, jax.Array]:
  """Eval-mode encoder features ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  mods, (features, _) = forward.apply_eval(
    _model(config, variant), variables, batch, config
  )
  return forward.with_fused(features, mods)


def align(
  variables: dict[str, Any],
  batch: dict,
  config: ml_collections.ConfigDict,
  *,
  variant: str,
) -> dict[str, jax.Array]:
  """The cross-modal projections ``{m: p_m [B, E]}`` (CLIP, SLIP)."""
  if variant not in _CROSS_MODAL:
    raise ValueError(f"{variant} aligns no modalities.")
  mods, (_, projections) = forward.apply_eval(
    _model(config, variant), variables, batch, config
  )
  return {m: projections[m] for m in mods}
