"""Light transformer decoder of the MAE path (InfoMAE, SPEC §4.3).

Input: the encoder's ``aux["patch_latent"] [B, Hn, Wn, D]`` (every patch
position carries the last-stage token that covers it) and the visible patch
indices. Visible positions take ``Dense(dim)`` of their latent, masked
positions a learned mask token; a learned positional embedding is added,
``depth`` pre-LayerNorm transformer blocks with global self-attention
follow, and a LayerNorm + ``Dense(patch_dim)`` predicts every patch:
``[B, N, patch_dim]`` in the row-major patch order of
:func:`msjax.kernels.masking.patchify`. The reconstruction loss takes the
masked rows (:func:`msjax.kernels.masking.masked_mse`).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from msjax.nn.swin_encoder import visible_from_ids

__all__ = ["MAEDecoder", "MAEDecoderTiny", "TransformerBlock"]


class TransformerBlock(nn.Module):
  """Pre-LN transformer block ``[B, N, D] -> [B, N, D]``.

  Attributes:
    num_heads: attention heads.
    mlp_ratio: MLP hidden width / ``D``.
    dropout_rate: dropout on attention weights and in the MLP.
  """

  num_heads: int
  mlp_ratio: float = 4.0
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Applies global self-attention and an MLP with residuals."""
    d = x.shape[-1]
    y = nn.LayerNorm(epsilon=1e-5, name="norm1")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dropout_rate=self.dropout_rate,
      deterministic=not train,
      name="attn",
    )(y, y)
    x = x + y
    y = nn.LayerNorm(epsilon=1e-5, name="norm2")(x)
    y = nn.gelu(
      nn.Dense(int(d * self.mlp_ratio), name="mlp_fc1")(y), approximate=False
    )
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    return x + nn.Dense(d, name="mlp_fc2")(y)


class MAEDecoder(nn.Module):
  """Reconstructs every patch from the visible patches' latents.

  Attributes:
    patch_dim: ``ph * pw * C`` values per patch.
    dim: decoder width.
    depth: transformer blocks.
    num_heads: attention heads.
    mlp_ratio: MLP hidden width / ``dim``.
  """

  patch_dim: int
  dim: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0

  @nn.compact
  def __call__(
    self, latent: jax.Array, ids_keep: jax.Array, *, train: bool
  ) -> jax.Array:
    """Predicts all patches.

    Args:
      latent: ``[B, Hn, Wn, D_enc]`` encoder latent per patch position
        (``aux["patch_latent"]`` of :class:`msjax.nn.SwinEncoder`).
      ids_keep: ``int [B, N_keep]`` visible patch indices (``N = Hn * Wn``).
      train: dropout on.

    Returns:
      ``[B, N, patch_dim]`` predictions (masked rows are the
      reconstructions; visible rows are predicted too, as in MAE).
    """
    if latent.ndim != 4:
      raise ValueError(
        f"latent must have shape [B, Hn, Wn, D], got shape {latent.shape}."
      )
    b, hn, wn, d = latent.shape
    n = hn * wn
    if ids_keep.ndim != 2 or ids_keep.shape[0] != b:
      raise ValueError(
        f"ids_keep must have shape [B={b}, N_keep], got {ids_keep.shape}."
      )
    visible = visible_from_ids(ids_keep, n)[..., None]
    tokens = nn.Dense(self.dim, name="embed")(latent.reshape(b, n, d))
    mask_token = self.param(
      "mask_token", nn.initializers.normal(0.02), (self.dim,)
    )
    tokens = jnp.where(visible, tokens, mask_token.astype(tokens.dtype))
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (n, self.dim))
    tokens = tokens + pos.astype(tokens.dtype)
    for i in range(self.depth):
      tokens = TransformerBlock(
        self.num_heads, self.mlp_ratio, name=f"block{i}"
      )(tokens, train=train)
    tokens = nn.LayerNorm(epsilon=1e-5, name="norm")(tokens)
    return nn.Dense(self.patch_dim, name="pred")(tokens)


#: Tiny decoder for tests.
MAEDecoderTiny = functools.partial(MAEDecoder, dim=8, depth=1, num_heads=2)
