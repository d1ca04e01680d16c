"""MAE patch masking and masked reconstruction loss (SPEC §4.3).

* :func:`patchify` / :func:`unpatchify`: ``[B, C, H, W]`` maps (e.g.
  spectrograms ``[B, C, F, N]``) to and from ``[B, N, ph * pw * C]`` patch
  sequences.
* :func:`random_patch_mask`: a per-sample random subset of visible patches,
  ``int(N * (1 - mask_ratio))`` kept per row, from an explicit PRNG key.
* :func:`take_visible` / :func:`restore_order`: gather the visible patches
  for the encoder, and put encoded tokens plus a mask token back in patch
  order for the decoder.
* :func:`masked_mse`: the reconstruction loss on masked patches only.

Patch order: the patch grid is read row-major (``H`` blocks outer, ``W``
blocks inner); inside a patch the values are ordered ``(ph, pw, C)``
(channels fastest), as in MAE.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from msjax.kernels._util import as_float, check_rank, check_same_shape

__all__ = [
  "PatchMask",
  "masked_mse",
  "num_kept",
  "patchify",
  "random_patch_mask",
  "restore_order",
  "take_visible",
  "unpatchify",
]

_NORM_PIX_EPS = 1e-6


class PatchMask(NamedTuple):
  """A random MAE mask (output of :func:`random_patch_mask`).

  Attributes:
    ids_keep: ``[B, N_keep]`` int32 indices of the visible patches, in the
      (random) order the encoder sees them.
    ids_restore: ``[B, N]`` int32; ``ids_restore[b, n]`` is the position of
      patch ``n`` in the shuffled sequence ``concat(visible, masked)``, so
      ``take_along_axis(shuffled, ids_restore)`` restores patch order.
    mask: ``[B, N]`` bool, ``True`` where the patch is masked (hidden).
  """

  ids_keep: jax.Array
  ids_restore: jax.Array
  mask: jax.Array


def _check_patch_size(patch_size: tuple[int, int]) -> tuple[int, int]:
  if len(patch_size) != 2 or any(int(p) < 1 for p in patch_size):
    raise ValueError(
      f"patch_size must be two positive ints (ph, pw), got {patch_size}."
    )
  return int(patch_size[0]), int(patch_size[1])


def patchify(x: ArrayLike, *, patch_size: tuple[int, int]) -> jax.Array:
  """Cuts ``[B, C, H, W]`` maps into non-overlapping ``ph x pw`` patches.

  Args:
    x: ``[B, C, H, W]`` array (a spectrogram ``[B, C, F, N]``); ``H`` must be
      divisible by ``ph`` and ``W`` by ``pw``.
    patch_size: ``(ph, pw)``.

  Returns:
    ``[B, N, ph * pw * C]`` with ``N = (H / ph) * (W / pw)``, grid row-major,
    values ordered ``(ph, pw, C)`` inside a patch.

  Raises:
    ValueError: on a rank other than 4 or a size not divisible by the patch.

  Example:
    >>> patchify(jnp.zeros((2, 3, 8, 8)), patch_size=(4, 2)).shape
    (2, 8, 24)
  """
  x = jnp.asarray(x)
  check_rank(x, 4, "x", "[B, C, H, W]")
  ph, pw = _check_patch_size(patch_size)
  b, c, h, w = x.shape
  if h % ph or w % pw:
    raise ValueError(
      f"x spatial shape (H, W) = {(h, w)} must be divisible by patch_size"
      f" {(ph, pw)}."
    )
  gh, gw = h // ph, w // pw
  x = x.reshape(b, c, gh, ph, gw, pw)
  x = jnp.transpose(x, (0, 2, 4, 3, 5, 1))  # [B, gh, gw, ph, pw, C]
  return x.reshape(b, gh * gw, ph * pw * c)


def unpatchify(
  patches: ArrayLike,
  *,
  patch_size: tuple[int, int],
  image_shape: tuple[int, int, int],
) -> jax.Array:
  """Inverse of :func:`patchify`.

  Args:
    patches: ``[B, N, ph * pw * C]``.
    patch_size: ``(ph, pw)``.
    image_shape: ``(C, H, W)`` of the map the patches came from.

  Returns:
    ``[B, C, H, W]``.

  Raises:
    ValueError: if the shapes are inconsistent.
  """
  patches = jnp.asarray(patches)
  check_rank(patches, 3, "patches", "[B, N, ph * pw * C]")
  ph, pw = _check_patch_size(patch_size)
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (C, H, W), got {image_shape}.")
  c, h, w = (int(s) for s in image_shape)
  if h % ph or w % pw:
    raise ValueError(
      f"image_shape (H, W) = {(h, w)} must be divisible by patch_size"
      f" {(ph, pw)}."
    )
  gh, gw = h // ph, w // pw
  b, n, p = patches.shape
  if n != gh * gw or p != ph * pw * c:
    raise ValueError(
      f"patches shape {tuple(patches.shape)} does not match image_shape"
      f" {(c, h, w)} with patch_size {(ph, pw)}: expected"
      f" [B, {gh * gw}, {ph * pw * c}]."
    )
  x = patches.reshape(b, gh, gw, ph, pw, c)
  x = jnp.transpose(x, (0, 5, 1, 3, 2, 4))  # [B, C, gh, ph, gw, pw]
  return x.reshape(b, c, h, w)


def num_kept(num_patches: int, *, mask_ratio: float = 0.75) -> int:
  """Number of visible patches per sample, ``int(N * (1 - mask_ratio))``."""
  return int(num_patches * (1.0 - mask_ratio))


def random_patch_mask(
  key: jax.Array, batch_size: int, num_patches: int, *, mask_ratio: float = 0.75
) -> PatchMask:
  """Per-sample uniformly random MAE mask (SPEC §4.3).

  Every row keeps exactly ``N_keep = int(N * (1 - mask_ratio))`` patches,
  a uniformly random subset drawn independently per row (a random
  permutation of the patches: the first ``N_keep`` are kept).

  Args:
    key: PRNG key.
    batch_size: ``B``.
    num_patches: ``N``.
    mask_ratio: fraction of patches hidden, in ``[0, 1)``; at least one
      patch must stay visible.

  Returns:
    :class:`PatchMask` with ``ids_keep [B, N_keep]``, ``ids_restore [B, N]``
    and ``mask [B, N]`` (``True`` = masked).

  Raises:
    ValueError: on non-positive sizes or a ratio leaving no visible patch.
  """
  if batch_size < 1 or num_patches < 1:
    raise ValueError(
      f"batch_size and num_patches must be >= 1, got {batch_size},"
      f" {num_patches}."
    )
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}.")
  n_keep = num_kept(num_patches, mask_ratio=mask_ratio)
  if n_keep < 1:
    raise ValueError(
      f"mask_ratio={mask_ratio} with N={num_patches} patches keeps none."
    )
  noise = jax.random.uniform(key, (batch_size, num_patches))
  ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
  ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
  ids_keep = ids_shuffle[:, :n_keep]
  mask = ids_restore >= n_keep
  return PatchMask(ids_keep=ids_keep, ids_restore=ids_restore, mask=mask)


def take_visible(tokens: ArrayLike, ids_keep: ArrayLike) -> jax.Array:
  """Gathers the visible patches: ``[B, N, D] -> [B, N_keep, D]``.

  Args:
    tokens: ``[B, N, D]`` patches or patch embeddings.
    ids_keep: ``[B, N_keep]`` int indices (``PatchMask.ids_keep``).

  Returns:
    ``[B, N_keep, D]``, row ``b`` holding ``tokens[b, ids_keep[b]]``.
  """
  tokens = jnp.asarray(tokens)
  ids_keep = jnp.asarray(ids_keep)
  check_rank(tokens, 3, "tokens", "[B, N, D]")
  check_rank(ids_keep, 2, "ids_keep", "[B, N_keep]")
  if ids_keep.shape[0] != tokens.shape[0]:
    raise ValueError(
      f"tokens {tuple(tokens.shape)} and ids_keep {tuple(ids_keep.shape)}"
      " disagree on B."
    )
  return jnp.take_along_axis(tokens, ids_keep[:, :, None], axis=1)


def restore_order(
  visible: ArrayLike, fill: ArrayLike, ids_restore: ArrayLike
) -> jax.Array:
  """Visible tokens plus a fill (mask) token, back in patch order.

  Args:
    visible: ``[B, N_keep, D]`` tokens in ``ids_keep`` order.
    fill: ``[D]`` token placed at every masked position.
    ids_restore: ``[B, N]`` (``PatchMask.ids_restore``).

  Returns:
    ``[B, N, D]``: position ``n`` holds the visible token of patch ``n`` or
    ``fill`` where patch ``n`` is masked.
  """
  visible = jnp.asarray(visible)
  fill = jnp.asarray(fill)
  ids_restore = jnp.asarray(ids_restore)
  check_rank(visible, 3, "visible", "[B, N_keep, D]")
  check_rank(ids_restore, 2, "ids_restore", "[B, N]")
  b, n_keep, d = visible.shape
  n = ids_restore.shape[1]
  if fill.shape != (d,) or ids_restore.shape[0] != b or n < n_keep:
    raise ValueError(
      f"inconsistent shapes: visible {tuple(visible.shape)}, fill"
      f" {tuple(fill.shape)} (expected ({d},)), ids_restore"
      f" {tuple(ids_restore.shape)}."
    )
  fill_rows = jnp.broadcast_to(fill.astype(visible.dtype), (b, n - n_keep, d))
  shuffled = jnp.concatenate([visible, fill_rows], axis=1)
  return jnp.take_along_axis(shuffled, ids_restore[:, :, None], axis=1)


def masked_mse(
  target: ArrayLike,
  prediction: ArrayLike,
  mask: ArrayLike,
  *,
  norm_pix_loss: bool = False,
) -> jax.Array:
  """MAE reconstruction loss on masked patches (SPEC §4.3).

  ``mean_b mean_{n: mask[b, n]} mean_p (x[b, n, p] - x_hat[b, n, p])^2``.
  A row without masked patches contributes 0 to the batch mean.

  With ``norm_pix_loss`` the target of each patch is first normalised as in
  MAE: ``(x - mean_p x) / sqrt(var_p x + 1e-6)`` with the unbiased
  (``ddof=1``) variance over the ``P`` values of the patch.

  Args:
    target: ``[B, N, P]`` patchified input (see :func:`patchify`).
    prediction: ``[B, N, P]`` decoder output.
    mask: ``[B, N]`` bool (``True`` = masked) or 0/1 float weights.
    norm_pix_loss: normalise targets per patch (needs ``P >= 2``).

  Returns:
    Scalar loss (float32 for 16-bit inputs).

  Raises:
    ValueError: on mismatched shapes.
  """
  target = as_float(target, "target")
  prediction = as_float(prediction, "prediction")
  check_rank(target, 3, "target", "[B, N, P]")
  check_same_shape(target, prediction, "target", "prediction")
  mask = jnp.asarray(mask)
  if mask.shape != target.shape[:2]:
    raise ValueError(
      f"mask must have shape [B, N] = {tuple(target.shape[:2])}, got"
      f" {tuple(mask.shape)}."
    )
  if norm_pix_loss:
    if target.shape[2] < 2:
      raise ValueError("norm_pix_loss needs at least 2 values per patch.")
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
    target = (target - mean) / jnp.sqrt(var + _NORM_PIX_EPS)
  dtype = jnp.result_type(target, prediction)
  weights = mask.astype(dtype)
  per_patch = jnp.mean((prediction - target) ** 2, axis=-1)  # [B, N]
  count = jnp.sum(weights, axis=1)
  per_sample = jnp.sum(per_patch * weights, axis=1) / jnp.maximum(count, 1.0)
  return jnp.mean(per_sample)
