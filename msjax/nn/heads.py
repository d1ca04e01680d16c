"""Heads: MLP projector, prototype bank and linear classifier.

All heads act on the last axis, so ``[B, E]`` and ``[..., E]`` inputs both
work. They return plain arrays (encoders return ``(features, aux)``).
"""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from msjax.kernels.norms import l2_normalize

__all__ = [
  "LinearClassifier",
  "MLPProjector",
  "PrototypeBank",
  "PrototypeOut",
  "unit_row_init",
]


class MLPProjector(nn.Module):
  """MLP projector ``[..., E] -> [..., out_dim]``.

  Layout: ``len(hidden_dims)`` times ``Dense -> [BatchNorm] -> ReLU ->
  [Dropout]``, then a final ``Dense(out_dim)`` (optionally followed by a
  BatchNorm without scale, as in SimCLR v2 / SwAV projectors).

  Attributes:
    hidden_dims: widths of the hidden layers (empty: a single linear map).
    out_dim: output width.
    use_bn: BatchNorm after every hidden Dense (``batch_stats`` collection).
    final_bn: BatchNorm (no learned scale/bias) after the output Dense.
    dropout_rate: dropout after every hidden activation (rng ``"dropout"``).
    bn_momentum: BatchNorm running-average momentum.
  """

  hidden_dims: Sequence[int]
  out_dim: int
  use_bn: bool = False
  final_bn: bool = False
  dropout_rate: float = 0.0
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Projects ``x``.

    Args:
      x: features ``[..., E]``.
      train: batch statistics and dropout on (True) or running averages and
        no dropout (False).

    Returns:
      ``[..., out_dim]``.
    """
    if x.ndim < 1:
      raise ValueError(f"x must have shape [..., E], got shape {x.shape}.")
    for i, width in enumerate(self.hidden_dims):
      x = nn.Dense(width, use_bias=not self.use_bn, name=f"dense{i}")(x)
      if self.use_bn:
        x = nn.BatchNorm(
          use_running_average=not train,
          momentum=self.bn_momentum,
          name=f"bn{i}",
        )(x)
      x = nn.relu(x)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.out_dim, use_bias=not self.final_bn, name="out")(x)
    if self.final_bn:
      x = nn.BatchNorm(
        use_running_average=not train,
        momentum=self.bn_momentum,
        use_scale=False,
        use_bias=False,
        name="out_bn",
      )(x)
    return x


def unit_row_init(
  key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32
) -> jax.Array:
  """Initialiser: standard normal rows, l2-normalised (unit rows).

  Args:
    key: PRNG key.
    shape: ``(K, E)``.
    dtype: parameter dtype.

  Returns:
    ``[K, E]`` array whose rows have unit norm.
  """
  if len(shape) != 2:
    raise ValueError(f"unit_row_init expects shape (K, E), got {shape}.")
  return l2_normalize(jax.random.normal(key, shape, jnp.float32)).astype(dtype)


class PrototypeOut(NamedTuple):
  """Output of :class:`PrototypeBank`.

  Attributes:
    prototypes: ``[K, E]`` (l2-normalised rows if the bank normalises).
    scores: ``[..., K]`` = ``z @ prototypes.T``, or ``None`` without ``z``.
  """

  prototypes: jax.Array
  scores: jax.Array | None


class PrototypeBank(nn.Module):
  """A learnable bank of ``K`` prototypes ``[K, E]`` (param ``"prototypes"``).

  Rows are initialised with unit norm. With ``normalize=True`` (default) the
  bank returns ``n(P)`` so the prototypes entering a similarity are unit rows
  whatever the optimiser did (the gradient flows through the normalisation);
  ProtoMM additionally re-normalises the raw parameter after every update
  (SPEC §2, done by the method's ``post_update``).

  Attributes:
    num_prototypes: ``K`` (ProtoMM prototypes, or ``C`` class prototypes).
    dim: ``E``.
    normalize: return l2-normalised rows.
  """

  num_prototypes: int
  dim: int
  normalize: bool = True

  @nn.compact
  def __call__(self, z: jax.Array | None = None) -> PrototypeOut:
    """Returns the prototypes and, given ``z``, the scores ``z @ P.T``.

    Args:
      z: embeddings ``[..., E]`` (used as given: normalise them first for
        cosine scores), or ``None``.

    Returns:
      ``PrototypeOut(prototypes [K, E], scores [..., K] or None)``.
    """
    protos = self.param(
      "prototypes", unit_row_init, (self.num_prototypes, self.dim)
    )
    if self.normalize:
      protos = l2_normalize(protos)
    if z is None:
      return PrototypeOut(protos, None)
    if z.ndim < 1 or z.shape[-1] != self.dim:
      raise ValueError(
        f"z must have shape [..., E={self.dim}], got shape {z.shape}."
      )
    return PrototypeOut(protos, z @ protos.T.astype(z.dtype))


class LinearClassifier(nn.Module):
  """Linear classifier ``[..., D] -> [..., C]``: ``z @ W.T + b`` (SPEC §3.5).

  Parameters are stored in SPEC layout: ``params["weight"]`` is ``W [C, D]``
  (LeCun-normal init) and ``params["bias"]`` is ``b [C]`` (zeros), so the
  classifier-alignment loss reads ``params["weight"]`` directly.

  Attributes:
    num_classes: ``C``.
    use_bias: learn ``b``.
  """

  num_classes: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Logits ``[..., C]`` of features ``z [..., D]``."""
    if z.ndim < 1:
      raise ValueError(f"z must have shape [..., D], got shape {z.shape}.")
    dim = z.shape[-1]
    weight = self.param(
      "weight",
      nn.initializers.lecun_normal(in_axis=1, out_axis=0),
      (self.num_classes, dim),
    )
    logits = z @ weight.T.astype(z.dtype)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.num_classes,))
      logits = logits + bias.astype(z.dtype)
    return logits
