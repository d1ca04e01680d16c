"""Window helpers of the SWIN transformer (pure functions).

Static index tables (relative positions, shifted-window region masks) are
built with numpy from static shapes at trace time; the array functions are
pure ``jnp``.
"""

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "masked_softmax",
  "relative_position_index",
  "shifted_window_mask",
  "window_geometry",
  "window_partition",
  "window_reverse",
]


def window_partition(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """Cuts ``[B, H, W, ...]`` into non-overlapping windows.

  Args:
    x: ``[B, H, W, *rest]`` with ``H % wh == 0`` and ``W % ww == 0``.
    window: ``(wh, ww)``.

  Returns:
    ``[B, nW, wh * ww, *rest]``, windows row-major, tokens row-major inside.
  """
  b, h, w = x.shape[:3]
  wh, ww = window
  if h % wh or w % ww:
    raise ValueError(
      f"feature map [B, H={h}, W={w}, ...] is not divisible by the window "
      f"{window}."
    )
  rest = x.shape[3:]
  x = x.reshape(b, h // wh, wh, w // ww, ww, *rest)
  x = jnp.moveaxis(x, 2, 3)  # [B, H/wh, W/ww, wh, ww, ...]
  return x.reshape(b, (h // wh) * (w // ww), wh * ww, *rest)


def window_reverse(
  windows: jax.Array, window: tuple[int, int], height: int, width: int
) -> jax.Array:
  """Inverse of :func:`window_partition`: ``[B, nW, N, ...] -> [B, H, W, ...]``.

  Args:
    windows: ``[B, nW, wh * ww, *rest]``.
    window: ``(wh, ww)``.
    height: ``H``.
    width: ``W``.

  Returns:
    ``[B, H, W, *rest]``.
  """
  b = windows.shape[0]
  wh, ww = window
  rest = windows.shape[3:]
  x = windows.reshape(b, height // wh, width // ww, wh, ww, *rest)
  x = jnp.moveaxis(x, 3, 2)  # [B, H/wh, wh, W/ww, ww, ...]
  return x.reshape(b, height, width, *rest)


def relative_position_index(window: tuple[int, int]) -> np.ndarray:
  """Index into the ``(2wh-1)(2ww-1)`` relative-position bias table.

  Args:
    window: ``(wh, ww)``.

  Returns:
    int ``[N, N]`` (``N = wh * ww``): entry ``(i, j)`` encodes the offset of
    token ``i`` relative to token ``j``.
  """
  wh, ww = window
  coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij"))
  coords = coords.reshape(2, -1)
  rel = coords[:, :, None] - coords[:, None, :]  # [2, N, N]
  return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


def _axis_regions(size: int, window: int, shift: int) -> np.ndarray:
  """Region label per position of one axis after a cyclic shift."""
  labels = np.zeros(size, np.int32)
  if shift > 0:
    labels[size - window : size - shift] = 1
    labels[size - shift :] = 2
  return labels


def shifted_window_mask(
  height: int, width: int, window: tuple[int, int], shift: tuple[int, int]
) -> np.ndarray:
  """Which tokens may attend to which inside the shifted windows.

  After the cyclic shift by ``-shift`` the last windows along a shifted axis
  hold tokens from up to three regions that are not neighbours in the
  original map; tokens attend only within their own region.

  Args:
    height: ``H`` of the (shifted) map.
    width: ``W``.
    window: ``(wh, ww)``.
    shift: ``(sh, sw)``, 0 for an unshifted axis.

  Returns:
    bool ``[nW, N, N]``: ``True`` where query ``i`` may attend to key ``j``.
  """
  rows = _axis_regions(height, window[0], shift[0])
  cols = _axis_regions(width, window[1], shift[1])
  region = rows[:, None] * 3 + cols[None, :]  # [H, W]
  wh, ww = window
  region = region.reshape(height // wh, wh, width // ww, ww)
  region = region.transpose(0, 2, 1, 3).reshape(-1, wh * ww)
  return region[:, :, None] == region[:, None, :]


def masked_softmax(logits: jax.Array, allowed: jax.Array | None) -> jax.Array:
  """Softmax over the last axis restricted to ``allowed`` entries.

  Disallowed entries get exactly zero weight (no ``-100`` leak), and a row
  with no allowed entry gives all zeros instead of NaN; gradients stay
  finite.

  Args:
    logits: ``[..., Nq, Nk]``.
    allowed: bool, broadcastable to ``logits``, or ``None`` (plain softmax).

  Returns:
    Attention weights of the shape of ``logits``.
  """
  if allowed is None:
    return jax.nn.softmax(logits, axis=-1)
  allowed = jnp.broadcast_to(allowed, logits.shape)
  masked = jnp.where(allowed, logits, -jnp.inf)
  m = jax.lax.stop_gradient(jnp.max(masked, axis=-1, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  e = jnp.where(allowed, jnp.exp(masked - m), 0.0)
  denom = jnp.sum(e, axis=-1, keepdims=True)
  return e / jnp.where(denom > 0, denom, 1.0)


def window_geometry(
  height: int,
  width: int,
  window: tuple[int, int],
  shift: tuple[int, int],
) -> tuple[tuple[int, int], tuple[int, int]]:
  """Effective ``(window, shift)`` on an ``H x W`` map.

  Along an axis whose size is at most the window, the window shrinks to the
  size and that axis is not shifted (as in Swin / FOCAL); the two axes are
  treated independently.
  """
  win, sh = [], []
  for size, w, s in zip((height, width), window, shift, strict=True):
    win.append(min(w, size))
    sh.append(s if size > w else 0)
  return (win[0], win[1]), (sh[0], sh[1])
