"""SWIN encoder of one time-frequency modality, with an MAE path.

InfoMAE; FOCAL's SW-Transformer is the architectural reference.

Layout (FOCAL, MOD dataset): the ``[B, C, H, W]`` map (``C`` = real/imag,
``H`` = 10 intervals, ``W`` = spectrum bins) is zero-padded so the patch grid
is a multiple of ``window * 2**(stages - 1)``, cut into ``ph x pw`` patches
(strided conv + LayerNorm, width ``embed_dim``), then ``len(depths)`` stages
of SWIN blocks (plain and shifted windows alternating, ``num_heads`` heads,
stochastic depth rising linearly to ``drop_path_rate``) with patch merging
between stages. Output: ``pool="flatten"`` (FOCAL's ``mod_in_layer``:
flatten the last stage's grid and ``Dense(out_dim)``) or ``pool="mean"``
(mean over visible tokens, then ``Dense(out_dim)`` unless ``out_dim`` is
``None``).

MAE path (``ids_keep`` given, e.g. ``random_patch_mask(...).ids_keep``): the
encoder sees visible patches only. Window attention over a sparse visible
set is handled densely: masked patches are replaced by zero tokens right
after the patch embedding, excluded from the keys/values of every window
attention (so no visible token attends to them), reset to zero after every
block, and a merged token is visible if any of its 2x2 inputs is. The output
therefore depends on the visible patches only (padding tokens, which carry
no data, count as visible as in FOCAL). The compute is that of the full grid.
"""

import functools
from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from msjax.nn.swin import LayerNorm, PatchMerging, SwinBlock, dropout_seeds

__all__ = [
  "SwinEncoder",
  "SwinMODAcoustic",
  "SwinMODSeismic",
  "SwinTiny",
  "visible_from_ids",
]


def visible_from_ids(ids_keep: jax.Array, num_patches: int) -> jax.Array:
  """Boolean visibility ``[B, N]`` from kept patch indices ``[B, N_keep]``."""
  if ids_keep.ndim != 2:
    raise ValueError(
      f"ids_keep must have shape [B, N_keep], got shape {ids_keep.shape}."
    )
  rows = jnp.arange(ids_keep.shape[0])[:, None]
  vis = jnp.zeros((ids_keep.shape[0], num_patches), bool)
  return vis.at[rows, ids_keep].set(True)


def _padded(size: int, unit: int) -> int:
  return max(1, -(-size // unit)) * unit


class SwinEncoder(nn.Module):
  """Hierarchical SWIN encoder ``[B, C, H, W] -> ([B, E], aux)``.

  Attributes:
    patch_size: ``(ph, pw)``; ``H % ph == 0`` and ``W % pw == 0``.
    window: attention window ``(wh, ww)`` in tokens.
    embed_dim: width of the first stage (doubles at every merge).
    depths: blocks per stage.
    num_heads: heads per stage (an int: the same in every stage, as FOCAL).
    mlp_ratio: MLP hidden width / token width.
    qkv_bias: bias in the qkv projections.
    drop_rate: dropout in attention projections and MLPs.
    attn_drop_rate: dropout on attention weights.
    drop_path_rate: final stochastic-depth rate.
    out_dim: output width ``E`` (``None`` with ``pool="mean"``: no Dense).
    pool: ``"flatten"`` (FOCAL) or ``"mean"``.
    final_norm: LayerNorm on the last stage's tokens.
    patch_norm: LayerNorm on every patch embedding (Swin's and FOCAL's
      choice). It rescales each token to unit variance, so a patch's
      amplitude -- for a real/imaginary STFT the only part of a cell that
      does not turn with the signal's phase -- is lost before the first
      block; ``False`` keeps it (docs/claims.md, InfoMAE).
    gelu_approximate: tanh GELU (faster on some backends).
    exact_dropout_rng: draw dropout masks with ``jax.random`` (as
      ``flax.linen.Dropout``) instead of the much cheaper counter-based
      hash of :func:`msjax.nn.swin.hash_keep_mask` (same distribution,
      different bits).
    pad_tokens: ``"visible"`` (FOCAL): the tokens of the zero padding up to
      the window grid are ordinary tokens. ``"masked"``: they are treated
      like the MAE's invisible tokens (no key/value for any window, zero
      after every block, left out of ``"mean"`` pooling). With
      ``"visible"``, windows of padding carry near-constant tokens, every
      LayerNorm multiplies their gradient by about ``rsqrt(1e-5)``, and the
      parameter gradients reach ~1e18 on the MOD shapes (10 x 20 padded to
      12 x 24); ``"masked"`` keeps them at the unpadded scale.
    empty_tokens: ``"visible"`` (Swin, FOCAL): a patch whose input is all
      zero is an ordinary token. ``"masked"``: every such patch -- the
      padding up to the window grid, and the cells a time or frequency
      mask (SpecAugment) zeroed -- is treated like an MAE-invisible token.
      An empty patch embeds to the conv bias (zero at initialisation), a
      window of them stays constant through every block, and each
      LayerNorm multiplies the gradient reaching such a token by up to
      ``rsqrt(1e-5)``: with InfoMAE's augmentations the encoder's gradient
      reaches 1e8 at the 64-wide SWIN and overflows float32 at the base
      size (docs/claims.md, "Empty tokens").
  """

  patch_size: tuple[int, int]
  window: tuple[int, int] = (3, 3)
  embed_dim: int = 64
  depths: Sequence[int] = (2, 2, 4)
  num_heads: int | Sequence[int] = 4
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop_rate: float = 0.2
  attn_drop_rate: float = 0.2
  drop_path_rate: float = 0.1
  out_dim: int | None = 256
  pool: Literal["flatten", "mean"] = "flatten"
  final_norm: bool = False
  patch_norm: bool = True
  gelu_approximate: bool = False
  exact_dropout_rng: bool = False
  pad_tokens: Literal["visible", "masked"] = "visible"
  empty_tokens: Literal["visible", "masked"] = "visible"

  def grid(self, height: int, width: int) -> dict[str, tuple[int, int]]:
    """Static geometry: patch grid, padded grid and last-stage grid."""
    ph, pw = self.patch_size
    if height % ph or width % pw:
      raise ValueError(
        f"input [B, C, H={height}, W={width}] is not divisible by the patch "
        f"size {self.patch_size}."
      )
    scale = 2 ** (len(self.depths) - 1)
    patches = (height // ph, width // pw)
    padded = tuple(
      _padded(n, w * scale) for n, w in zip(patches, self.window, strict=True)
    )
    last = (padded[0] // scale, padded[1] // scale)
    return {"patches": patches, "padded": padded, "last": last}

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    ids_keep: jax.Array | None = None,
    *,
    train: bool,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of time-frequency maps.

    Args:
      x: ``[B, C, H, W]`` (channels first).
      ids_keep: ``int [B, N_keep]`` indices of the visible patches in the
        row-major patch grid (``N = (H/ph) * (W/pw)``), or ``None``.
      train: dropout and stochastic depth on (rng stream ``"dropout"``).

    Returns:
      ``(features [B, E], aux)``. aux: ``"stage<i>"`` token maps
      ``[B, h_i, w_i, D_i]``, ``"tokens"`` (last stage), ``"visible"``
      (bool, last stage grid), ``"patch_latent" [B, H/ph, W/pw, D_last]``
      (each patch gets the last-stage token covering it; the MAE decoder's
      input).
    """
    if x.ndim != 4:
      raise ValueError(f"x must have shape [B, C, H, W], got shape {x.shape}.")
    b, _, height, width = x.shape
    geo = self.grid(height, width)
    (hn, wn), (hp, wp) = geo["patches"], geo["padded"]
    ph, pw = self.patch_size
    heads = self.num_heads
    if isinstance(heads, int):
      heads = (heads,) * len(self.depths)
    if len(heads) != len(self.depths):
      raise ValueError(
        f"num_heads {heads} must give one value per stage {tuple(self.depths)}."
      )
    h = jnp.transpose(x, (0, 2, 3, 1))
    h = jnp.pad(h, ((0, 0), (0, (hp - hn) * ph), (0, (wp - wn) * pw), (0, 0)))
    h = nn.Conv(
      self.embed_dim, (ph, pw), (ph, pw), padding="VALID", name="patch_embed"
    )(h)
    if self.patch_norm:
      h = LayerNorm(1e-5, name="patch_norm")(h)
    if self.pad_tokens not in ("visible", "masked"):
      raise ValueError(
        f"pad_tokens must be 'visible' or 'masked', got {self.pad_tokens!r}."
      )
    if self.empty_tokens not in ("visible", "masked"):
      raise ValueError(
        "empty_tokens must be 'visible' or 'masked', got"
        f" {self.empty_tokens!r}."
      )
    mask_empty = self.empty_tokens == "masked"
    # Padding patches are empty: "masked" empty tokens mask them too.
    pad_visible = self.pad_tokens == "visible" and not mask_empty
    visible = None
    if ids_keep is not None:
      if ids_keep.ndim != 2 or ids_keep.shape[0] != b:
        raise ValueError(
          f"ids_keep must have shape [B={b}, N_keep], got {ids_keep.shape}."
        )
      visible = visible_from_ids(ids_keep, hn * wn).reshape(b, hn, wn)
    elif not pad_visible and (hp, wp) != (hn, wn):
      visible = jnp.ones((b, hn, wn), bool)
    if mask_empty:
      cells = x.reshape(b, x.shape[1], hn, ph, wn, pw)
      filled = jnp.any(cells != 0, axis=(1, 3, 5))  # [B, hn, wn]
      visible = filled if visible is None else visible & filled
    if visible is not None:
      visible = jnp.pad(
        visible,
        ((0, 0), (0, hp - hn), (0, wp - wn)),
        constant_values=pad_visible,
      )
      h = jnp.where(visible[..., None], h, 0.0)
    rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths))
    # One PRNG draw per forward pass for every dropout / stochastic-depth
    # site (msjax.nn.swin.dropout_seeds); exact_dropout_rng keeps one
    # "dropout" rng per site.
    seeds = None
    dropping = self.drop_rate or self.attn_drop_rate or self.drop_path_rate
    if train and dropping and not self.exact_dropout_rng:
      seeds = dropout_seeds(self.make_rng("dropout"))
    aux: dict[str, jax.Array] = {}
    block = 0
    for s, depth in enumerate(self.depths):
      dim = self.embed_dim * 2**s
      for i in range(depth):
        shift = (
          (0, 0) if i % 2 == 0 else (self.window[0] // 2, self.window[1] // 2)
        )
        h = SwinBlock(
          dim,
          heads[s],
          tuple(self.window),
          shift,
          self.mlp_ratio,
          self.qkv_bias,
          self.drop_rate,
          self.attn_drop_rate,
          float(rates[block]),
          self.gelu_approximate,
          self.exact_dropout_rng,
          name=f"stage{s}_block{i}",
        )(h, visible, train=train, seeds=seeds)
        block += 1
      aux[f"stage{s}"] = h
      if s < len(self.depths) - 1:
        h, visible = PatchMerging(name=f"merge{s}")(h, visible)
    if self.final_norm:
      h = LayerNorm(1e-5, name="final_norm")(h)
      if visible is not None:
        h = jnp.where(visible[..., None], h, 0.0)
    aux["tokens"] = h
    if visible is not None:
      aux["visible"] = visible
    scale = 2 ** (len(self.depths) - 1)
    latent = jnp.repeat(jnp.repeat(h, scale, axis=1), scale, axis=2)
    aux["patch_latent"] = latent[:, :hn, :wn]
    if self.pool == "flatten":
      if self.out_dim is None:
        raise ValueError("pool='flatten' needs an out_dim.")
      return nn.Dense(self.out_dim, name="out")(h.reshape(b, -1)), aux
    if self.pool != "mean":
      raise ValueError(f"pool must be 'flatten' or 'mean', got {self.pool!r}.")
    if visible is None:
      pooled = jnp.mean(h, axis=(1, 2))
    else:
      weight = visible[..., None].astype(h.dtype)
      pooled = jnp.sum(h * weight, axis=(1, 2)) / jnp.maximum(
        jnp.sum(weight, axis=(1, 2)), 1.0
      )
    aux["pooled"] = pooled
    if self.out_dim is None:
      return pooled, aux
    return nn.Dense(self.out_dim, name="out")(pooled), aux


#: FOCAL MOD seismic encoder: input ``[B, 2, 10, 20]``, patch 1x1.
SwinMODSeismic = functools.partial(SwinEncoder, patch_size=(1, 1))

#: FOCAL MOD acoustic encoder: input ``[B, 2, 10, 1600]``, patch 1x40.
SwinMODAcoustic = functools.partial(SwinEncoder, patch_size=(1, 40))

#: Tiny variant for tests (2 stages, width 8, window 2x2, 2 heads).
SwinTiny = functools.partial(
  SwinEncoder,
  window=(2, 2),
  embed_dim=8,
  depths=(2, 2),
  num_heads=2,
  out_dim=16,
)
