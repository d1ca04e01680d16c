"""2-D ResNet encoders for spectrograms / frames ``[B, C, H, W]`` (ProMoBal).

:data:`ResNet18` is the standard ResNet-18 trunk (He et al. 2016) without
the classification layer: ``Conv 7x7/2 (64) -> BN -> ReLU -> MaxPool 3x3/2``,
four stages of two basic blocks (two 3x3 convs, widths 64, 128, 256, 512,
stride 2 at the start of stages 2-4 with a 1x1 projection shortcut), global
average pooling -> ``[B, 512]``. About 11.2 M parameters for 3 input channels
(11.17 M for 1 channel).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["BasicBlock2D", "ResNet2D", "ResNet18", "ResNet2DTiny"]

_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BasicBlock2D(nn.Module):
  """Two 3x3 convs with a residual: ``[B, H, W, C] -> [B, H/s, W/s, w]``.

  Attributes:
    width: output channels.
    stride: spatial stride of the first conv.
    bn_momentum: BatchNorm momentum.
  """

  width: int
  stride: int = 1
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Applies the block to ``x [B, H, W, C_in]`` (channels last)."""
    bn = functools.partial(
      nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum
    )
    s = (self.stride, self.stride)
    y = nn.Conv(
      self.width,
      (3, 3),
      s,
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=_CONV_INIT,
      name="conv1",
    )(x)
    y = nn.relu(bn(name="bn1")(y))
    y = nn.Conv(
      self.width,
      (3, 3),
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=_CONV_INIT,
      name="conv2",
    )(y)
    y = bn(name="bn2")(y)
    if x.shape[-1] != self.width or self.stride != 1:
      x = nn.Conv(
        self.width,
        (1, 1),
        s,
        use_bias=False,
        kernel_init=_CONV_INIT,
        name="proj",
      )(x)
      x = bn(name="proj_bn")(x)
    return nn.relu(x + y)


class ResNet2D(nn.Module):
  """2-D ResNet encoder ``[B, C, H, W] -> ([B, widths[-1]], aux)``.

  Attributes:
    stage_widths: channels per stage.
    blocks_per_stage: basic blocks per stage.
    stem_width: stem conv channels.
    stem_pool: 3x3/2 max-pool after the stem.
    bn_momentum: BatchNorm momentum.
  """

  stage_widths: Sequence[int] = (64, 128, 256, 512)
  blocks_per_stage: Sequence[int] = (2, 2, 2, 2)
  stem_width: int = 64
  stem_pool: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of images / spectrograms.

    Args:
      x: ``[B, C, H, W]`` (channels first).
      train: batch statistics (True) or running averages (False).

    Returns:
      ``(features [B, stage_widths[-1]], aux)``; aux holds ``"stem"`` and
      ``"stage<i>"`` feature maps ``[B, H_i, W_i, C_i]`` (channels last).
    """
    if x.ndim != 4:
      raise ValueError(f"x must have shape [B, C, H, W], got shape {x.shape}.")
    if len(self.stage_widths) != len(self.blocks_per_stage):
      raise ValueError(
        f"stage_widths {tuple(self.stage_widths)} and blocks_per_stage "
        f"{tuple(self.blocks_per_stage)} must have the same length."
      )
    aux: dict[str, jax.Array] = {}
    h = jnp.transpose(x, (0, 2, 3, 1))
    h = nn.Conv(
      self.stem_width,
      (7, 7),
      (2, 2),
      padding=((3, 3), (3, 3)),
      use_bias=False,
      kernel_init=_CONV_INIT,
      name="stem_conv",
    )(h)
    h = nn.BatchNorm(
      use_running_average=not train, momentum=self.bn_momentum, name="stem_bn"
    )(h)
    h = nn.relu(h)
    if self.stem_pool:
      h = nn.max_pool(h, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    aux["stem"] = h
    for s, (width, n) in enumerate(
      zip(self.stage_widths, self.blocks_per_stage, strict=True)
    ):
      for b in range(n):
        stride = 2 if (s > 0 and b == 0) else 1
        h = BasicBlock2D(
          width, stride, self.bn_momentum, name=f"stage{s}_block{b}"
        )(h, train=train)
      aux[f"stage{s}"] = h
    return jnp.mean(h, axis=(1, 2)), aux


#: Paper-size ResNet-18 trunk (ProMoBal audio / video encoders).
ResNet18 = functools.partial(
  ResNet2D, stage_widths=(64, 128, 256, 512), blocks_per_stage=(2, 2, 2, 2)
)

#: Tiny variant for tests.
ResNet2DTiny = functools.partial(
  ResNet2D, stage_widths=(4, 8), blocks_per_stage=(1, 1), stem_width=4
)
