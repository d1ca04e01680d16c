"""1-D ResNet encoders for raw sensor windows ``[B, C, T]`` (ProtoMM).

Block layout of :data:`ResNet26_1D` (26 weight layers):

* stem: ``Conv1d(k=7, stride 2, 64) -> BN -> ReLU -> MaxPool(3, stride 2)``
  (1 layer);
* 4 stages x 2 bottleneck blocks; a bottleneck block is
  ``Conv(k=1, w) -> BN -> ReLU -> Conv(k=kernel_size, w, stride s) -> BN ->
  ReLU -> Conv(k=1, 4w) -> BN``, plus the residual (a strided ``k=1``
  projection + BN where the shape changes), then ReLU (4 x 2 x 3 = 24 layers);
  stage widths ``w = 64, 128, 256, 512``; stride 1 in stage 1, 2 after;
* global average pooling over time, then the head ``Dense(embed_dim)``
  (1 layer).

1 + 24 + 1 = 26 (projection shortcuts not counted, as for ResNet-50). The
``"basic"`` block (two ``k=kernel_size`` convs) gives ResNet-18-style 1-D
encoders with the same stage layout.
"""

import functools
from collections.abc import Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
  "BasicBlock1D",
  "BottleneckBlock1D",
  "ResNet1D",
  "ResNet26_1D",
  "ResNet1DTiny",
]

_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _bn(train: bool, momentum: float, name: str, zero: bool = False) -> Any:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=momentum,
    scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
    name=name,
  )


def _conv(width: int, kernel: int, stride: int, name: str) -> nn.Conv:
  """A bias-free ``SAME`` conv of ``kernel`` taps and temporal ``stride``."""
  return nn.Conv(
    width,
    (kernel,),
    (stride,),
    padding="SAME",
    use_bias=False,
    kernel_init=_CONV_INIT,
    name=name,
  )


def _residual(
  x: jax.Array, y: jax.Array, stride: int, train: bool, momentum: float
) -> jax.Array:
  """``relu(x + y)``, ``x`` projected (``k=1`` conv + BN) to ``y``'s shape.

  Call from a compact ``__call__``: the projection's layers are named
  ``proj`` and ``proj_bn`` in the calling module.
  """
  width = y.shape[-1]
  if x.shape[-1] != width or stride != 1:
    x = _conv(width, 1, stride, "proj")(x)
    x = _bn(train, momentum, "proj_bn")(x)
  return nn.relu(x + y)


class BasicBlock1D(nn.Module):
  """Two ``k=kernel_size`` convs with a residual: ``[B, T, W] -> [B, T/s, w]``.

  Attributes:
    width: output channels.
    stride: temporal stride of the first conv.
    kernel_size: conv kernel size.
    bn_momentum: BatchNorm momentum.
    zero_init_residual: last BN scale starts at 0 (block starts as identity).
  """

  width: int
  stride: int = 1
  kernel_size: int = 3
  bn_momentum: float = 0.9
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Applies the block to ``x [B, T, W_in]``."""
    k, m = self.kernel_size, self.bn_momentum
    y = _conv(self.width, k, self.stride, "conv1")(x)
    y = nn.relu(_bn(train, m, "bn1")(y))
    y = _conv(self.width, k, 1, "conv2")(y)
    y = _bn(train, m, "bn2", self.zero_init_residual)(y)
    return _residual(x, y, self.stride, train, m)


class BottleneckBlock1D(nn.Module):
  """``1-k-1`` bottleneck with a residual: ``[B, T, W] -> [B, T/s, 4w]``.

  Attributes:
    width: bottleneck channels (output is ``expansion * width``).
    stride: temporal stride of the middle conv.
    kernel_size: middle conv kernel size.
    expansion: output channel multiplier.
    bn_momentum: BatchNorm momentum.
    zero_init_residual: last BN scale starts at 0.
  """

  width: int
  stride: int = 1
  kernel_size: int = 3
  expansion: int = 4
  bn_momentum: float = 0.9
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Applies the block to ``x [B, T, W_in]``."""
    k, m = self.kernel_size, self.bn_momentum
    y = _conv(self.width, 1, 1, "conv1")(x)
    y = nn.relu(_bn(train, m, "bn1")(y))
    y = _conv(self.width, k, self.stride, "conv2")(y)
    y = nn.relu(_bn(train, m, "bn2")(y))
    y = _conv(self.width * self.expansion, 1, 1, "conv3")(y)
    y = _bn(train, m, "bn3", self.zero_init_residual)(y)
    return _residual(x, y, self.stride, train, m)


class ResNet1D(nn.Module):
  """1-D ResNet encoder ``[B, C, T] -> ([B, embed_dim], aux)``.

  Attributes:
    stage_widths: block width per stage.
    blocks_per_stage: number of blocks per stage.
    block: ``"bottleneck"`` or ``"basic"``.
    embed_dim: output width of the head ``Dense``; ``None`` returns the pooled
      features (``stage_widths[-1] * expansion``) without a head.
    stem_width: stem conv channels.
    stem_kernel: stem conv kernel size.
    stem_pool: max-pool (3, stride 2) after the stem.
    kernel_size: temporal kernel size of the block convolutions.
    bn_momentum: BatchNorm momentum.
    zero_init_residual: zero-init the last BN of every block.
  """

  stage_widths: Sequence[int] = (64, 128, 256, 512)
  blocks_per_stage: Sequence[int] = (2, 2, 2, 2)
  block: Literal["bottleneck", "basic"] = "bottleneck"
  embed_dim: int | None = 512
  stem_width: int = 64
  stem_kernel: int = 7
  stem_pool: bool = True
  kernel_size: int = 3
  bn_momentum: float = 0.9
  zero_init_residual: bool = False

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of windows.

    Args:
      x: raw windows ``[B, C, T]`` (channels first).
      train: batch statistics (True) or running averages (False).

    Returns:
      ``(features [B, E], aux)``; aux holds ``"stem" [B, T', W]``,
      ``"stage<i>" [B, T_i, W_i]`` and ``"pooled" [B, W_last]``.
    """
    if x.ndim != 3:
      raise ValueError(f"x must have shape [B, C, T], got shape {x.shape}.")
    if len(self.stage_widths) != len(self.blocks_per_stage):
      raise ValueError(
        f"stage_widths {tuple(self.stage_widths)} and blocks_per_stage "
        f"{tuple(self.blocks_per_stage)} must have the same length."
      )
    aux: dict[str, jax.Array] = {}
    h = jnp.swapaxes(x, 1, 2)  # [B, T, C]
    h = _conv(self.stem_width, self.stem_kernel, 2, "stem_conv")(h)
    h = nn.relu(_bn(train, self.bn_momentum, "stem_bn")(h))
    if self.stem_pool:
      h = nn.max_pool(h, (3,), (2,), padding="SAME")
    aux["stem"] = h
    if self.block == "bottleneck":
      block_cls = BottleneckBlock1D
    elif self.block == "basic":
      block_cls = BasicBlock1D
    else:
      raise ValueError(
        f"block must be 'bottleneck' or 'basic', got {self.block!r}."
      )
    for s, (width, n) in enumerate(
      zip(self.stage_widths, self.blocks_per_stage, strict=True)
    ):
      for b in range(n):
        stride = 2 if (s > 0 and b == 0) else 1
        h = block_cls(
          width,
          stride=stride,
          kernel_size=self.kernel_size,
          bn_momentum=self.bn_momentum,
          zero_init_residual=self.zero_init_residual,
          name=f"stage{s}_block{b}",
        )(h, train=train)
      aux[f"stage{s}"] = h
    pooled = jnp.mean(h, axis=1)
    aux["pooled"] = pooled
    if self.embed_dim is None:
      return pooled, aux
    return nn.Dense(self.embed_dim, name="head")(pooled), aux


#: Paper-size 1-D ResNet-26 (ProtoMM): 4 x 2 bottleneck blocks, widths
#: 64..512 (2048 pooled channels), head to 512.
ResNet26_1D = functools.partial(
  ResNet1D,
  stage_widths=(64, 128, 256, 512),
  blocks_per_stage=(2, 2, 2, 2),
  block="bottleneck",
  embed_dim=512,
)

#: Tiny variant for tests: 2 stages x 1 bottleneck block (widths 4, 8),
#: head to 16.
ResNet1DTiny = functools.partial(
  ResNet1D,
  stage_widths=(4, 8),
  blocks_per_stage=(1, 1),
  block="bottleneck",
  embed_dim=16,
  stem_width=8,
)
