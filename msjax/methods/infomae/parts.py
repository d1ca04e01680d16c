"""Building blocks of the InfoMAE method (private to :mod:`infomae`).

Module construction from ``config.model``, input preparation (spectrogram
padding to the patch grid), the discriminator table of SPEC §4.2 and the
per-modality forward pieces. Parameters live in a flat dict of sub-trees,
one per module instance::

  {"encoder_<m>", "decoder_<m>",                       # stage 1 and 2
   "shared_<m>", "private_<m>",                        # stage 2
   "discriminators": {"x1x2u1": ..., ..., "v2u2": ...}}  # stage 2
"""

import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.masking import patchify
from msjax.nn.discriminators import DensityRatioDiscriminator
from msjax.nn.heads import MLPProjector
from msjax.nn.mae import MAEDecoder
from msjax.nn.spectrogram_swin import COMPRESSIONS, compress_and_pad
from msjax.nn.swin_encoder import SwinEncoder

__all__ = [
  "ALIGNMENTS",
  "DISCRIMINATORS",
  "DiscSpec",
  "PAIRWISE_MI",
  "REC_TARGETS",
  "align_tau",
  "alignment",
  "centered",
  "centers_features",
  "check_stage",
  "decoder",
  "disc_logits",
  "discriminator",
  "encoder",
  "module_key",
  "pairwise_mi",
  "patch_targets",
  "prepare_input",
  "project",
  "projector",
  "reconstruction_map",
]

#: ``loss.rec_target`` values: what the MAE decoder reconstructs.
REC_TARGETS = ("input", "pair_log_magnitude")

#: ``loss.pairwise_mi`` values: the direction of the pairwise density-ratio
#: terms of ``L_shared`` and ``L_private`` (SPEC §4.2 minimises them).
PAIRWISE_MI = ("minimize", "maximize")

#: ``loss.alignment`` values: alpha's instance term of ``L_shared`` on the
#: synchronized rows, SPEC §4.2's ``mean ||U1 - U2||^2`` ("mse") or a
#: symmetric InfoNCE between the l2-normalised ``U1`` and ``U2`` ("info_nce",
#: temperature ``loss.align_tau``).
ALIGNMENTS = ("mse", "info_nce")


class DiscSpec(NamedTuple):
  """One discriminator of SPEC §4.2.

  Attributes:
    name: parameter-tree key, SPEC tuple in lower case (modality 1, 2).
    raw: indices (0-based) of the modalities whose raw input ``X`` enters.
    vectors: ``(kind, modality)`` pairs, kind ``"u"`` (shared) or ``"v"``
      (private), in concatenation order.
  """

  name: str
  raw: tuple[int, ...]
  vectors: tuple[tuple[str, int], ...]


#: The ten discriminators for two modalities, in the SPEC's order.
DISCRIMINATORS = (
  DiscSpec("x1x2u1", (0, 1), (("u", 0),)),
  DiscSpec("x1u1", (0,), (("u", 0),)),
  DiscSpec("x2u1", (1,), (("u", 0),)),
  DiscSpec("x1x2u2", (0, 1), (("u", 1),)),
  DiscSpec("x2u2", (1,), (("u", 1),)),
  DiscSpec("x1u2", (0,), (("u", 1),)),
  DiscSpec("x1v1", (0,), (("v", 0),)),
  DiscSpec("v1u1", (), (("v", 0), ("u", 0))),
  DiscSpec("x2v2", (1,), (("v", 1),)),
  DiscSpec("v2u2", (), (("v", 1), ("u", 1))),
)


def check_stage(config: ml_collections.ConfigDict) -> int:
  """Returns ``config.loss.stage`` (1 or 2) after validating the config."""
  stage = config.loss.stage
  if stage not in (1, 2):
    raise ValueError(f"loss.stage must be 1 or 2, got {stage!r}.")
  modalities = tuple(config.data.modalities)
  if stage == 2 and len(modalities) != 2:
    raise ValueError(
      "InfoMAE stage 2 needs exactly two modalities in data.modalities, got"
      f" {modalities}."
    )
  if not 0.0 <= config.loss.mask_ratio < 1.0:
    raise ValueError(
      f"loss.mask_ratio must be in [0, 1), got {config.loss.mask_ratio}."
    )
  direction = pairwise_mi(config)
  if direction not in PAIRWISE_MI:
    raise ValueError(
      f"loss.pairwise_mi must be one of {PAIRWISE_MI}, got {direction!r}."
    )
  if alignment(config) not in ALIGNMENTS:
    raise ValueError(
      f"loss.alignment must be one of {ALIGNMENTS}, got {alignment(config)!r}."
    )
  if align_tau(config) <= 0:
    raise ValueError(f"loss.align_tau must be > 0, got {align_tau(config)}.")
  if config.loss.seq_len < 1:
    raise ValueError(f"loss.seq_len must be >= 1, got {config.loss.seq_len}.")
  return stage


def module_key(rng: jax.Array, name: str) -> jax.Array:
  """A key for module ``name``, independent of the order modules are built."""
  return jax.random.fold_in(rng, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def prepare_input(
  x: jax.Array, name: str, config: ml_collections.ConfigDict
) -> jax.Array:
  """Checks a spectrogram and zero-pads ``F``, ``N`` to the patch grid.

  Args:
    x: ``[B, C, F, N]`` spectrogram of modality ``name``.
    name: modality name (for messages).
    config: the experiment config (reads ``model.patch_size`` and
      ``model.input_compression``).

  Returns:
    float32 ``[B, C, F', N']`` with ``F'``, ``N'`` the next multiples of
    ``(ph, pw)``; padded cells are zero. With ``model.input_compression =
    "log1p"`` every value is first mapped to ``sign(x) log(1 + |x|)``
    (spectrogram magnitudes span decades; ``"none"`` feeds them raw).
  """
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(
      f"InfoMAE needs spectrograms: batch['signals'][{name!r}] must have shape"
      f" [B, C, F, N], got {tuple(x.shape)} (set data.representation="
      "'stft')."
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
      f"batch['signals'][{name!r}] must be floating point, got {x.dtype}."
    )
  compression = config.model.input_compression
  if compression not in COMPRESSIONS:
    raise ValueError(
      f"model.input_compression {compression!r} is not 'none' or 'log1p'."
    )
  return compress_and_pad(x, config.model.patch_size, compression)


def reconstruction_map(
  x: jax.Array, name: str, config: ml_collections.ConfigDict
) -> jax.Array:
  """The map the MAE reconstructs, on the encoder input's padded grid.

  ``loss.rec_target = "input"`` (SPEC §4.3): the encoder input itself
  (:func:`prepare_input`). ``"pair_log_magnitude"``: the channels of ``x``
  are (real, imaginary) pairs of an STFT (``data.stft.output =
  "real_imag"``) and the target is ``log(1 + |X|)`` of each pair, ``[B, C/2,
  F', N']``. The phase of a real/imaginary STFT cell is not predictable from
  its neighbours (it turns with the signal's time offset), so an MAE asked
  for it learns to predict zero; the magnitude envelope is predictable and
  carries the rhythm and energy of the signal (docs/claims.md, InfoMAE).

  Args:
    x: ``[B, C, F, N]`` raw spectrogram of modality ``name``.
    name: modality name (for messages).
    config: the experiment config.

  Returns:
    float32 ``[B, C_t, F', N']`` (``F'``, ``N'`` as :func:`prepare_input`).
  """
  target = config.loss.rec_target
  if target == "input":
    return prepare_input(x, name, config)
  if target != "pair_log_magnitude":
    raise ValueError(
      f"loss.rec_target must be one of {REC_TARGETS}, got {target!r}."
    )
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 4 or x.shape[1] % 2:
    raise ValueError(
      f"loss.rec_target='pair_log_magnitude' needs (real, imag) channel"
      f" pairs: batch['signals'][{name!r}] has shape {tuple(x.shape)}; set"
      " data.stft.output='real_imag'."
    )
  pairs = x.reshape(x.shape[0], x.shape[1] // 2, 2, *x.shape[2:])
  magnitude = jnp.sqrt(jnp.sum(jnp.square(pairs), axis=2) + 1e-12)
  ph, pw = config.model.patch_size
  pad = ((0, 0), (0, 0), (0, -x.shape[2] % ph), (0, -x.shape[3] % pw))
  return jnp.pad(jnp.log1p(magnitude), pad)


def patch_targets(x: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """``[B, C, F', N'] -> [B, N_p, ph * pw * C]`` reconstruction targets."""
  return patchify(x, patch_size=tuple(config.model.patch_size))


def encoder(config: ml_collections.ConfigDict) -> SwinEncoder:
  """The SWIN encoder of one modality (MAE path, mean pooling)."""
  e = config.model.swin
  return SwinEncoder(
    patch_size=tuple(config.model.patch_size),
    window=tuple(e.window),
    embed_dim=e.embed_dim,
    depths=tuple(e.depths),
    num_heads=e.num_heads,
    mlp_ratio=e.mlp_ratio,
    drop_rate=e.drop_rate,
    attn_drop_rate=e.attn_drop_rate,
    drop_path_rate=e.drop_path_rate,
    out_dim=e.out_dim,
    pool="mean",
    pad_tokens=e.pad_tokens,
    empty_tokens=e.get("empty_tokens", "visible"),
    patch_norm=e.patch_norm,
  )


def decoder(config: ml_collections.ConfigDict, patch_dim: int) -> MAEDecoder:
  """The MAE decoder of one modality, ``patch_dim = ph * pw * C``."""
  d = config.model.decoder
  return MAEDecoder(
    patch_dim=patch_dim,
    dim=d.dim,
    depth=d.depth,
    num_heads=d.num_heads,
    mlp_ratio=d.mlp_ratio,
  )


def projector(config: ml_collections.ConfigDict, kind: str) -> MLPProjector:
  """Shared (``kind="shared"``) or private projector: a 2-layer MLP."""
  m = config.model
  out = m.shared_dim if kind == "shared" else m.private_dim
  return MLPProjector(hidden_dims=(m.projector_hidden,), out_dim=out)


def alignment(config: ml_collections.ConfigDict) -> str:
  """``loss.alignment`` (``"mse"`` for configs saved without it)."""
  return config.loss.get("alignment", "mse")


def align_tau(config: ml_collections.ConfigDict) -> float:
  """``loss.align_tau`` (0.1 for configs saved without it)."""
  return float(config.loss.get("align_tau", 0.1))


def pairwise_mi(config: ml_collections.ConfigDict) -> str:
  """``loss.pairwise_mi`` (``"minimize"`` for configs saved without it)."""
  return config.loss.get("pairwise_mi", "minimize")


def centers_features(config: ml_collections.ConfigDict) -> bool:
  """``model.center_features`` (False for configs saved without it)."""
  return bool(config.model.get("center_features", False))


def centered(
  feat: jax.Array,
  running_mean: jax.Array,
  config: ml_collections.ConfigDict,
  *,
  train: bool,
) -> tuple[jax.Array, jax.Array]:
  """Encoder features ``[B, E]`` less their mean, and the new running mean.

  Training: the batch mean over rows is subtracted and the running mean
  ``[E]`` moves towards it (``model.center_momentum``); evaluation: the
  running mean is subtracted and kept. ``model.center_features = False``
  (SPEC) returns ``feat`` and ``running_mean`` unchanged.
  """
  if not centers_features(config):
    return feat, running_mean
  if not train:
    return feat - running_mean, running_mean
  mean = jnp.mean(feat, axis=0)
  momentum = config.model.center_momentum
  new_mean = momentum * running_mean + (1.0 - momentum) * (
    jax.lax.stop_gradient(mean)
  )
  return feat - mean, new_mean


def project(
  params: dict,
  kind: str,
  m: str,
  feat: jax.Array,
  config: ml_collections.ConfigDict,
  *,
  train: bool,
) -> jax.Array:
  """``U_m`` (``kind="shared"``) or ``V_m`` of encoder features ``[B, E]``."""
  return projector(config, kind).apply(
    {"params": params[f"{kind}_{m}"]}, feat, train=train
  )


def discriminator(
  config: ml_collections.ConfigDict, spec: DiscSpec
) -> DensityRatioDiscriminator:
  """The density-ratio discriminator of one tuple type (SPEC §4.1)."""
  d = config.model.disc
  return DensityRatioDiscriminator(
    num_raw=len(spec.raw),
    num_vectors=len(spec.vectors),
    hidden_dim=d.hidden_dim,
    num_layers=d.num_layers,
    conv_features=tuple(d.conv_features),
    raw_embed_dim=d.raw_embed_dim,
  )


def disc_logits(
  config: ml_collections.ConfigDict,
  spec: DiscSpec,
  disc_params: dict,
  raw: tuple[jax.Array, ...],
  vectors: dict[str, tuple[jax.Array, ...]],
) -> jax.Array:
  """Logits ``[B]`` of discriminator ``spec`` on aligned tuples.

  Args:
    config: the experiment config.
    spec: which discriminator.
    disc_params: its parameters.
    raw: the two modalities' inputs ``X_i [B, C_i, F_i, N_i]``.
    vectors: ``{"u": (U1, U2), "v": (V1, V2)}``, each ``[B, E]``.

  Returns:
    ``[B]`` logits.
  """
  return discriminator(config, spec).apply(
    {"params": disc_params},
    [raw[i] for i in spec.raw],
    [vectors[kind][i] for kind, i in spec.vectors],
  )
