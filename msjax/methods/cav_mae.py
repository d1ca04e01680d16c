"""CAV-MAE: contrastive masked autoencoding across modalities, 1-D signals.

Reference: Gong, Rouditchenko, Liu, Harwath, Karlinsky, Kuehne, Glass,
"Contrastive Audio-Visual Masked Autoencoder", ICLR 2023.

CAV-MAE's audio-visual model, written for raw sensor windows ``[B, C_m,
T_m]`` (every modality; ``M >= 2``): each window is cut into
``N = model.num_patches`` time patches of ``P_m = T_m / N`` samples,
``x_m [B, N, C_m * P_m]`` (channel-major inside a patch), embedded by
``Dense(D)`` plus a learned positional and a modality embedding.

Training (one step):

1. Per modality a random mask hides ``loss.mask_ratio`` of the patches
   (:func:`msjax.kernels.random_patch_mask`, independent per row and
   modality); the ``N_keep`` visible tokens ``[B, N_keep, D]`` go through the
   modality's own transformer blocks (``model.modality_depth``).
2. Joint blocks (``model.joint_depth``, shared weights) run three times, as
   in CAV-MAE: on the concatenation of all modalities' visible tokens
   ``[B, M * N_keep, D]`` (then LayerNorm ``norm``: the decoder's input), and
   on each modality's tokens alone (then the modality's LayerNorm
   ``norm_<m>`` and a mean over tokens: ``c_m [B, D]``).
3. The decoder embeds the joint tokens (``Dense(D_dec)``), puts a learned
   mask token at every hidden position (per modality), adds decoder
   positional and modality embeddings, runs ``model.decoder_depth`` blocks
   over all ``M * N`` tokens and predicts each modality's patches with its
   own ``Dense(C_m * P_m)``: ``xhat_m [B, N, C_m * P_m]``.

Objective (``mask_m [B, N]`` true where hidden)::

  L_r = mean_m masked_mse(x_m, xhat_m, mask_m)     (norm_pix_loss option)
  L_c = mean_{m < n} info_nce(c_m, c_n; tau)       (symmetric InfoNCE)
  L   = L_r + lambda_c * L_c

(:func:`msjax.kernels.masked_mse`, :func:`msjax.kernels.info_nce`; CAV-MAE:
``mask_ratio = 0.75``, ``tau = 0.05``, ``lambda_c = 0.01``.)

:func:`embed` (eval mode, nothing masked): ``c_m [B, D]`` per modality (all
``N`` tokens through the modality blocks, the joint blocks on the modality
alone, ``norm_<m>``, mean over tokens) and ``"fused"`` their concatenation
``[B, M * D]``.

Metrics: ``loss/cav_mae``, ``loss/recon``, ``loss/contrastive``.
"""

import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.contrastive import info_nce
from msjax.kernels.masking import (
  masked_mse,
  random_patch_mask,
  restore_order,
  take_visible,
)
from msjax.methods.config_checks import check_size, modalities
from msjax.methods.forward import with_fused
from msjax.methods.interface import Method
from msjax.methods.key_streams import rng_streams
from msjax.nn import TransformerBlock

__all__ = [
  "METHOD",
  "CAVMAEModel",
  "cav_mae_loss",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "patchify_1d",
]

_INIT = nn.initializers.normal(0.02)


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)`` with every key declared.
  """
  check_size(size)
  tiny = size == "tiny"
  model = dict(
    num_patches=16,
    dim=32 if tiny else 768,
    num_heads=2 if tiny else 12,
    modality_depth=1 if tiny else 11,
    joint_depth=1,
    decoder_dim=16 if tiny else 512,
    decoder_depth=1 if tiny else 8,
    decoder_heads=2 if tiny else 16,
    mlp_ratio=2.0 if tiny else 4.0,
  )
  loss = dict(
    mask_ratio=0.75,
    tau=0.05 if not tiny else 0.1,
    # CAV-MAE: 0.01; the tiny runs (a few hundred steps) need the
    # contrastive term to shape the pooled features quickly.
    contrastive_weight=0.01 if not tiny else 1.0,
    norm_pix_loss=True,
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


def patchify_1d(x: jax.Array, num_patches: int) -> jax.Array:
  """``[B, C, T] -> [B, N, C * P]`` time patches, ``P = T / N``.

  Patch ``n`` holds ``x[:, c, n * P + p]`` at position ``c * P + p``.
  """
  b, ch, t = x.shape
  if t % num_patches:
    raise ValueError(
      f"window length T={t} is not a multiple of model.num_patches="
      f"{num_patches}; choose a divisor of T."
    )
  p = t // num_patches
  return (
    x.reshape(b, ch, num_patches, p)
    .transpose(0, 2, 1, 3)
    .reshape(b, num_patches, ch * p)
  )


class CAVMAEModel(nn.Module):
  """Patch embeddings, modality and joint encoders, the joint decoder.

  Attributes:
    modalities: modality names, in config order.
    num_patches: ``N`` per modality.
    dim: encoder width ``D``.
    num_heads: encoder attention heads.
    modality_depth: transformer blocks per modality.
    joint_depth: shared joint blocks.
    decoder_dim: decoder width.
    decoder_depth: decoder blocks.
    decoder_heads: decoder attention heads.
    mlp_ratio: MLP hidden width / block width.
    patch_dims: ``C_m * P_m`` per modality (the prediction widths).
  """

  modalities: tuple[str, ...]
  num_patches: int
  dim: int
  num_heads: int
  modality_depth: int
  joint_depth: int
  decoder_dim: int
  decoder_depth: int
  decoder_heads: int
  mlp_ratio: float
  patch_dims: tuple[int, ...]

  def setup(self) -> None:
    """Declares every submodule (used by several call paths)."""
    n, d = self.num_patches, self.dim
    self.embed = {m: nn.Dense(d, name=f"embed_{m}") for m in self.modalities}
    self.pos = self.param("pos_embed", _INIT, (n, d))
    self.modality_token = self.param(
      "modality_embed", _INIT, (len(self.modalities), d)
    )
    self.modality_blocks = {
      m: [
        TransformerBlock(self.num_heads, self.mlp_ratio, name=f"{m}_block{i}")
        for i in range(self.modality_depth)
      ]
      for m in self.modalities
    }
    self.joint_blocks = [
      TransformerBlock(self.num_heads, self.mlp_ratio, name=f"joint_block{i}")
      for i in range(self.joint_depth)
    ]
    self.norm = nn.LayerNorm(epsilon=1e-6, name="norm")
    self.norms = {
      m: nn.LayerNorm(epsilon=1e-6, name=f"norm_{m}") for m in self.modalities
    }
    dd = self.decoder_dim
    self.decoder_embed = nn.Dense(dd, name="decoder_embed")
    self.mask_token = self.param("mask_token", _INIT, (dd,))
    self.decoder_pos = self.param("decoder_pos_embed", _INIT, (n, dd))
    self.decoder_modality = self.param(
      "decoder_modality_embed", _INIT, (len(self.modalities), dd)
    )
    self.decoder_blocks = [
      TransformerBlock(
        self.decoder_heads, self.mlp_ratio, name=f"decoder_block{i}"
      )
      for i in range(self.decoder_depth)
    ]
    self.decoder_norm = nn.LayerNorm(epsilon=1e-6, name="decoder_norm")
    self.preds = {
      m: nn.Dense(p, name=f"pred_{m}")
      for m, p in zip(self.modalities, self.patch_dims, strict=True)
    }

  def _tokens(self, m: str, patches: jax.Array) -> jax.Array:
    i = self.modalities.index(m)
    return self.embed[m](patches) + self.pos + self.modality_token[i]

  def _modality(self, m: str, x: jax.Array, train: bool) -> jax.Array:
    for block in self.modality_blocks[m]:
      x = block(x, train=train)
    return x

  def _joint(self, x: jax.Array, train: bool) -> jax.Array:
    for block in self.joint_blocks:
      x = block(x, train=train)
    return x

  def _pooled(self, m: str, x: jax.Array, train: bool) -> jax.Array:
    return jnp.mean(self.norms[m](self._joint(x, train)), axis=1)

  def encode(
    self, patches: dict[str, jax.Array], *, train: bool
  ) -> dict[str, jax.Array]:
    """Unmasked features ``{m: [B, D]}`` from ``{m: [B, N, C_m P_m]}``."""
    return {
      m: self._pooled(
        m, self._modality(m, self._tokens(m, patches[m]), train), train
      )
      for m in self.modalities
    }

  def __call__(
    self,
    patches: dict[str, jax.Array],
    ids_keep: dict[str, jax.Array],
    ids_restore: dict[str, jax.Array],
    *,
    train: bool,
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The masked training pass.

    Args:
      patches: ``{m: [B, N, C_m P_m]}``.
      ids_keep: ``{m: int [B, N_keep]}`` visible patches.
      ids_restore: ``{m: int [B, N]}``.
      train: dropout on.

    Returns:
      ``(pooled {m: [B, D]}, predictions {m: [B, N, C_m P_m]})``.
    """
    visible = {
      m: self._modality(
        m, take_visible(self._tokens(m, patches[m]), ids_keep[m]), train
      )
      for m in self.modalities
    }
    pooled = {m: self._pooled(m, visible[m], train) for m in self.modalities}
    keep = visible[self.modalities[0]].shape[1]
    joint = self.norm(
      self._joint(
        jnp.concatenate([visible[m] for m in self.modalities], 1), train
      )
    )
    joint = self.decoder_embed(joint)
    tokens = []
    for i, m in enumerate(self.modalities):
      part = joint[:, i * keep : (i + 1) * keep]
      full = restore_order(part, self.mask_token, ids_restore[m])
      tokens.append(full + self.decoder_pos + self.decoder_modality[i])
    x = jnp.concatenate(tokens, axis=1)
    for block in self.decoder_blocks:
      x = block(x, train=train)
    x = self.decoder_norm(x)
    n = self.num_patches
    preds = {
      m: self.preds[m](x[:, i * n : (i + 1) * n])
      for i, m in enumerate(self.modalities)
    }
    return pooled, preds


def _model(
  config: ml_collections.ConfigDict, patches: dict[str, jax.Array]
) -> CAVMAEModel:
  c = config.model
  return CAVMAEModel(
    modalities=modalities(config),
    num_patches=int(c.num_patches),
    dim=int(c.dim),
    num_heads=int(c.num_heads),
    modality_depth=int(c.modality_depth),
    joint_depth=int(c.joint_depth),
    decoder_dim=int(c.decoder_dim),
    decoder_depth=int(c.decoder_depth),
    decoder_heads=int(c.decoder_heads),
    mlp_ratio=float(c.mlp_ratio),
    patch_dims=tuple(int(patches[m].shape[-1]) for m in patches),
  )


def _patches(batch: dict, config: ml_collections.ConfigDict) -> dict:
  """Checks the batch; returns ``{m: [B, N, C_m P_m]}``."""
  mods = modalities(config)
  if len(mods) < 2:
    raise ValueError(f"CAV-MAE needs >= 2 modalities, got {mods}.")
  signals = batch.get("signals") if isinstance(batch, dict) else None
  if not isinstance(signals, dict) or any(m not in signals for m in mods):
    raise ValueError(
      f"batch['signals'] must hold every modality of {mods} (CAV-MAE)."
    )
  sizes = set()
  out = {}
  for m in mods:
    x = jnp.asarray(signals[m])
    if x.ndim != 3:
      raise ValueError(
        f"CAV-MAE takes raw windows [B, C, T]; batch['signals'][{m!r}] has "
        f"shape {tuple(x.shape)}."
      )
    sizes.add(x.shape[0])
    out[m] = patchify_1d(x, int(config.model.num_patches))
  if len(sizes) != 1:
    raise ValueError(f"batch arrays disagree on the batch size: {sizes}.")
  return out


def cav_mae_loss(
  patches: dict[str, jax.Array],
  preds: dict[str, jax.Array],
  masks: dict[str, jax.Array],
  pooled: dict[str, jax.Array],
  *,
  tau: float,
  contrastive_weight: float,
  norm_pix_loss: bool,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """``L_r + lambda_c * L_c`` (module docstring).

  Args:
    patches: ``{m: [B, N, P_m]}`` targets.
    preds: ``{m: [B, N, P_m]}`` reconstructions.
    masks: ``{m: bool [B, N]}``, true where hidden.
    pooled: ``{m: [B, D]}`` contrastive features (dict order = modality
      order).
    tau: InfoNCE temperature.
    contrastive_weight: ``lambda_c``.
    norm_pix_loss: normalise each target patch.

  Returns:
    ``(loss [], (L_r [], L_c []))``.
  """
  mods = list(pooled)
  recon = jnp.mean(
    jnp.stack(
      [
        masked_mse(patches[m], preds[m], masks[m], norm_pix_loss=norm_pix_loss)
        for m in mods
      ]
    )
  )
  contrast = jnp.mean(
    jnp.stack(
      [
        info_nce(pooled[a], pooled[b], tau=tau)
        for a, b in itertools.combinations(mods, 2)
      ]
    )
  )
  return recon + contrastive_weight * contrast, (recon, contrast)


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables ``{"params"}`` for ``example_batch``."""
  patches = _patches(example_batch, config)
  b = next(iter(patches.values())).shape[0]
  n = int(config.model.num_patches)
  mask = random_patch_mask(
    jax.random.fold_in(rng, 1), b, n, mask_ratio=config.loss.mask_ratio
  )
  ids_keep = {m: mask.ids_keep for m in patches}
  ids_restore = {m: mask.ids_restore for m in patches}
  return dict(
    _model(config, patches).init(
      rng, patches, ids_keep, ids_restore, train=False
    )
  )


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """CAV-MAE's loss on one (unlabelled) batch.

  Args:
    variables: ``{"params"}``.
    batch: ``{"signals": {m: [B, C_m, T_m]}, ...}`` (labels unused).
    rng: the step key (streams ``augment``: the masks, ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state = {}, metrics))``.
  """
  del step
  patches = _patches(batch, config)
  streams = rng_streams(rng)
  b = next(iter(patches.values())).shape[0]
  n = int(config.model.num_patches)
  masks = {
    m: random_patch_mask(
      jax.random.fold_in(streams["augment"], i),
      b,
      n,
      mask_ratio=config.loss.mask_ratio,
    )
    for i, m in enumerate(patches)
  }
  pooled, preds = _model(config, patches).apply(
    variables,
    patches,
    {m: k.ids_keep for m, k in masks.items()},
    {m: k.ids_restore for m, k in masks.items()},
    train=True,
    rngs={"dropout": streams["dropout"]},
  )
  loss, (recon, contrast) = cav_mae_loss(
    patches,
    preds,
    {m: k.mask for m, k in masks.items()},
    pooled,
    tau=config.loss.tau,
    contrastive_weight=config.loss.contrastive_weight,
    norm_pix_loss=bool(config.loss.norm_pix_loss),
  )
  metrics = {
    "loss/cav_mae": loss,
    "loss/recon": recon,
    "loss/contrastive": contrast,
  }
  return loss, ({}, metrics)


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, D]}`` and ``"fused" [B, M * D]`` (nothing masked)."""
  patches = _patches(batch, config)
  feats = _model(config, patches).apply(
    variables, patches, train=False, method=CAVMAEModel.encode
  )
  mods = list(patches)
  return with_fused(feats, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed)
