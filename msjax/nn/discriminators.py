"""Density-ratio discriminators of InfoMAE (SPEC §4.1).

A discriminator scores a tuple of ``num_raw`` raw inputs ``X_i`` and
``num_vectors`` representation vectors (e.g. ``(X1, X2, U1)``: 2 raw, 1
vector; ``(X1, U1)``: 1 and 1; ``(V1, U1)``: 0 and 2). Each raw input enters
through its own small convolutional embedding (:class:`ConvEmbedding`), the
embeddings are concatenated with the vectors in the order given, and a
5-layer MLP outputs one logit per sample.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ConvEmbedding", "DensityRatioDiscriminator"]


class ConvEmbedding(nn.Module):
  """Small convolutional embedding of a raw input -> ``[B, embed_dim]``.

  Accepts 1-D windows ``[B, C, T]`` or time-frequency maps ``[B, C, H, W]``
  (channels first). Layout: per entry of ``features`` a stride-2 ``SAME``
  convolution (kernel 3, or 3x3) followed by LeakyReLU(0.2); then the mean
  over positions and ``Dense(embed_dim)``. No normalisation layers, so the
  discriminator has no state.

  Attributes:
    features: channels of the strided convolutions.
    embed_dim: output width.
  """

  features: Sequence[int] = (16, 32)
  embed_dim: int = 64

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Embeds ``x [B, C, T]`` or ``x [B, C, H, W]`` to ``[B, embed_dim]``."""
    if x.ndim not in (3, 4):
      raise ValueError(
        "raw input must have shape [B, C, T] or [B, C, H, W], got shape "
        f"{x.shape}."
      )
    spatial = x.ndim - 2
    h = jnp.moveaxis(x, 1, -1)  # channels last
    for i, width in enumerate(self.features):
      h = nn.Conv(
        width, (3,) * spatial, (2,) * spatial, padding="SAME", name=f"conv{i}"
      )(h)
      h = nn.leaky_relu(h, 0.2)
    h = jnp.mean(h, axis=tuple(range(1, 1 + spatial)))
    return nn.Dense(self.embed_dim, name="embed")(h)


class DensityRatioDiscriminator(nn.Module):
  """``R_theta(X_1..X_r, v_1..v_s) -> logit [B]`` (SPEC §4.1).

  ``sigmoid(logit)`` is the probability that the tuple was drawn jointly.
  Raw inputs come first in the concatenation, then vectors.

  Attributes:
    num_raw: number of raw inputs in the tuple (0, 1, 2, ...).
    num_vectors: number of representation vectors in the tuple.
    hidden_dim: width of the 4 hidden MLP layers.
    num_layers: MLP depth (``num_layers - 1`` hidden Dense + output Dense).
    conv_features: channels of every raw input's conv embedding.
    raw_embed_dim: width of a raw input's embedding.
  """

  num_raw: int
  num_vectors: int
  hidden_dim: int = 256
  num_layers: int = 5
  conv_features: Sequence[int] = (16, 32)
  raw_embed_dim: int = 64

  @nn.compact
  def __call__(
    self, raw: Sequence[jax.Array], vectors: Sequence[jax.Array]
  ) -> jax.Array:
    """Scores a batch of tuples.

    Args:
      raw: ``num_raw`` raw inputs, each ``[B, C, T]`` or ``[B, C, H, W]``.
      vectors: ``num_vectors`` representations, each ``[B, E_j]``.

    Returns:
      logits ``[B]``.
    """
    raw, vectors = tuple(raw), tuple(vectors)
    if len(raw) != self.num_raw or len(vectors) != self.num_vectors:
      raise ValueError(
        f"discriminator expects {self.num_raw} raw inputs and "
        f"{self.num_vectors} vectors, got {len(raw)} and {len(vectors)}."
      )
    if not raw and not vectors:
      raise ValueError("discriminator tuple is empty.")
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {self.num_layers}.")
    batch = (raw + vectors)[0].shape[0]
    for j, v in enumerate(vectors):
      if v.ndim != 2 or v.shape[0] != batch:
        raise ValueError(
          f"vectors[{j}] must have shape [B={batch}, E], got {v.shape}."
        )
    parts = []
    for i, x in enumerate(raw):
      if x.shape[0] != batch:
        raise ValueError(
          f"raw[{i}] must have batch size {batch}, got shape {x.shape}."
        )
      parts.append(
        ConvEmbedding(
          self.conv_features, self.raw_embed_dim, name=f"raw_embed{i}"
        )(x)
      )
    h = jnp.concatenate(parts + list(vectors), axis=-1)
    for layer in range(self.num_layers - 1):
      h = nn.leaky_relu(nn.Dense(self.hidden_dim, name=f"dense{layer}")(h), 0.2)
    return nn.Dense(1, name="logit")(h)[:, 0]
