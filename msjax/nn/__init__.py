"""Flax Linen models of msjax.

Encoders return ``(features [B, E], aux)`` with named intermediates in
``aux``; heads return arrays. Every module takes ``train: bool`` where its
behaviour differs between training and evaluation (BatchNorm statistics in
the ``batch_stats`` collection, dropout via the ``"dropout"`` rng stream,
Gumbel noise via ``"gumbel"``).
"""

from msjax.nn.discriminators import ConvEmbedding, DensityRatioDiscriminator
from msjax.nn.fusion import SaMoBalFusion
from msjax.nn.heads import (
  LinearClassifier,
  MLPProjector,
  PrototypeBank,
  PrototypeOut,
  unit_row_init,
)
from msjax.nn.mae import MAEDecoder, MAEDecoderTiny, TransformerBlock
from msjax.nn.resnet1d import (
  BasicBlock1D,
  BottleneckBlock1D,
  ResNet1D,
  ResNet1DTiny,
  ResNet26_1D,
)
from msjax.nn.resnet2d import BasicBlock2D, ResNet2D, ResNet2DTiny, ResNet18
from msjax.nn.spectrogram_swin import SpectrogramSwin
from msjax.nn.swin import (
  DropPath,
  PatchMerging,
  ShiftedWindowAttention,
  SwinBlock,
  WindowAttention,
)
from msjax.nn.swin_encoder import (
  SwinEncoder,
  SwinMODAcoustic,
  SwinMODSeismic,
  SwinTiny,
  visible_from_ids,
)
from msjax.nn.windows import window_geometry

__all__ = [
  "BasicBlock1D",
  "BasicBlock2D",
  "BottleneckBlock1D",
  "ConvEmbedding",
  "DensityRatioDiscriminator",
  "DropPath",
  "LinearClassifier",
  "MAEDecoder",
  "MAEDecoderTiny",
  "MLPProjector",
  "PatchMerging",
  "PrototypeBank",
  "PrototypeOut",
  "ResNet18",
  "ResNet1D",
  "ResNet1DTiny",
  "ResNet26_1D",
  "ResNet2D",
  "ResNet2DTiny",
  "SaMoBalFusion",
  "ShiftedWindowAttention",
  "SpectrogramSwin",
  "SwinBlock",
  "SwinEncoder",
  "SwinMODAcoustic",
  "SwinMODSeismic",
  "SwinTiny",
  "TransformerBlock",
  "WindowAttention",
  "unit_row_init",
  "visible_from_ids",
  "window_geometry",
  "visible_from_ids",
]
