"""A SWIN encoder of one spectrogram, with its input compression and padding.

:class:`SpectrogramSwin` is InfoMAE's per-modality encoder without the MAE
mask: ``[B, C, F, N]`` maps are compressed (``sign(x) log(1 + |x|)``, or
fed as they are), zero-padded to the patch grid and encoded by
:class:`msjax.nn.SwinEncoder` with mean pooling. It lets any method read
spectrograms through the same encoder InfoMAE trains (``model.encoder =
"swin"``), so a comparison with InfoMAE can hold the encoder fixed.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from msjax.nn.swin_encoder import SwinEncoder

__all__ = ["COMPRESSIONS", "SpectrogramSwin", "compress_and_pad"]

#: ``compression`` choices: signed log1p of every value, or none.
COMPRESSIONS = ("log1p", "none")


def compress_and_pad(
  x: jax.Array, patch_size: Sequence[int], compression: str
) -> jax.Array:
  """Compresses a spectrogram and zero-pads it to the patch grid.

  Args:
    x: ``[B, C, F, N]`` floating point.
    patch_size: ``(ph, pw)``.
    compression: ``"log1p"`` (``sign(x) log(1 + |x|)``: spectrogram values
      span decades) or ``"none"``.

  Returns:
    float32 ``[B, C, F', N']``, ``F'`` and ``N'`` the next multiples of
    ``ph`` and ``pw``; padded cells are zero.

  Raises:
    ValueError: an unknown ``compression``.
  """
  if compression not in COMPRESSIONS:
    raise ValueError(
      f"input compression {compression!r} is not one of {COMPRESSIONS}."
    )
  x = jnp.asarray(x).astype(jnp.float32)
  if compression == "log1p":
    x = jnp.sign(x) * jnp.log1p(jnp.abs(x))
  ph, pw = patch_size
  pad = ((0, 0), (0, 0), (0, -x.shape[2] % ph), (0, -x.shape[3] % pw))
  return jnp.pad(x, pad)


class SpectrogramSwin(nn.Module):
  """``[B, C, F, N] -> ([B, D_last], aux)``: compress, pad, SWIN, mean-pool.

  Attributes:
    patch_size: ``(ph, pw)`` of the patch embedding.
    swin: ``(field, value)`` pairs for :class:`msjax.nn.SwinEncoder`
      (``window``, ``embed_dim``, ``depths``, ``num_heads``, dropout
      rates, ``patch_norm``, ...; not ``patch_size``, ``pool`` or
      ``out_dim``).
    compression: one of :data:`COMPRESSIONS`.
  """

  patch_size: tuple[int, int]
  swin: tuple[tuple[str, Any], ...] = ()
  compression: str = "log1p"

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes every window (no mask).

    Args:
      x: ``[B, C, F, N]``.
      train: dropout and stochastic depth on (rng stream ``"dropout"``).

    Returns:
      ``(features [B, D_last], aux)`` of :class:`msjax.nn.SwinEncoder`,
      ``D_last`` the last stage's token width.
    """
    if x.ndim != 4:
      raise ValueError(
        f"SpectrogramSwin needs [B, C, F, N] maps, got shape {x.shape}."
      )
    h = compress_and_pad(x, self.patch_size, self.compression)
    encoder = SwinEncoder(
      patch_size=tuple(self.patch_size),
      pool="mean",
      out_dim=None,
      name="swin",
      **dict(self.swin),
    )
    return encoder(h, train=train)
