"""SWIN transformer blocks for time-frequency maps (InfoMAE, FOCAL layout).

Window multi-head self-attention with a learned relative-position bias,
shifted windows in every second block (cyclic shift by half a window with a
region mask), pre-LayerNorm residual blocks with stochastic depth, and patch
merging (2x2 -> LayerNorm -> Linear to twice the width) between stages. The
encoder built from these blocks is in :mod:`msjax.nn.swin_encoder`.

Visibility (MAE): every block takes an optional ``visible [B, H, W]`` mask.
Invisible tokens are excluded from the keys/values of every window, so they
never influence a visible token, and their own output is reset to zero;
patch merging marks a merged token visible if any of its four inputs is.

Dropout (CPU cost): masks come by default from a counter-based hash
(:func:`hash_keep_mask`, same Bernoulli distribution as ``flax.linen.Dropout``
but other bits); drawing ~90 M mask bits per step of the MOD encoder pair
with ``jax.random`` (threefry or rbg alike) took about a third of the
fwd+bwd time on CPU. ``exact_dropout_rng=True`` restores ``nn.Dropout``.
The encoder calls the JAX PRNG once per forward pass (:func:`dropout_seeds`)
and hands the two seed words down; each dropout and stochastic-depth site
salts them with a hash of its own module path (:func:`salted_seeds`). Each
``make_rng`` + ``jax.random.bits`` pair is two threefry calls, which XLA's
CPU backend compiles as two while loops; with one draw per encoder the
InfoMAE stage-2 step (``base`` size) has 81 such loops instead of 260 and
compiles in about a fifth less time (``benchmarks/results/README.md``).

Backward passes (CPU cost): the token-wise linear layers
(:data:`msjax.nn.token_matmul.TokenDense`)
and the window logits (:func:`msjax.nn.token_matmul.window_logits`) use
:mod:`msjax.nn.token_matmul`'s hand-written backward passes, and
:func:`layer_norm` its closed-form one; values equal JAX's own rules to
rounding and parameters are unchanged (what it saves on the MOD pair's
forward+backward step: ``benchmarks/results/README.md``).
"""

import functools
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from msjax.nn.token_matmul import TokenDense, window_logits
from msjax.nn.windows import (
  masked_softmax,
  relative_position_index,
  shifted_window_mask,
  window_geometry,
  window_partition,
  window_reverse,
)

__all__ = [
  "DropPath",
  "HashDropout",
  "LayerNorm",
  "dropout_seeds",
  "hash_keep_mask",
  "hash_mask_from_seeds",
  "salted_seeds",
  "layer_norm",
  "PatchMerging",
  "ShiftedWindowAttention",
  "SwinBlock",
  "WindowAttention",
]


class DropPath(nn.Module):
  """Stochastic depth: drops the residual branch per sample (rng "dropout").

  Attributes:
    rate: drop probability.
  """

  rate: float

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool, seeds: jax.Array | None = None
  ) -> jax.Array:
    """Returns ``x`` scaled by a per-sample keep mask (identity in eval).

    Args:
      x: ``[B, ...]``.
      train: drop on.
      seeds: ``uint32 [2]`` from :func:`dropout_seeds`: the mask is a hash
        of the sample index and these seeds salted with this module's path
        (no PRNG call). ``None``: ``jax.random.bernoulli`` with the
        ``"dropout"`` rng.
    """
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    if seeds is None:
      mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
    else:
      mask = hash_mask_from_seeds(salted_seeds(seeds, self.path), keep, shape)
    return jnp.where(mask, x / keep, 0.0)


def _fmix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser (a bijection with full avalanche)."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def dropout_seeds(key: jax.Array) -> jax.Array:
  """``uint32 [2]`` seed words for :func:`hash_mask_from_seeds` from ``key``."""
  return jax.random.bits(key, (2,), jnp.uint32)


def salted_seeds(seeds: jax.Array, path: tuple[str, ...]) -> jax.Array:
  """Seeds of one dropout site, ``uint32 [2]``.

  ``fmix(seeds ^ (c, c ^ 0x9E3779B9))`` with ``c = crc32("/".join(path))``.

  Sites with different module paths get unrelated seeds from one draw (the
  CRC of the path is a trace-time constant), so one :func:`dropout_seeds`
  per forward pass serves every site of an encoder.
  """
  salt = zlib.crc32("/".join(path).encode())
  words = np.array([salt, salt ^ 0x9E3779B9], np.uint32)
  return _fmix32(seeds ^ jnp.asarray(words))


def hash_mask_from_seeds(
  seeds: jax.Array, keep: float, shape: tuple[int, ...]
) -> jax.Array:
  """Bernoulli(``keep``) mask ``fmix(fmix(index + s0) ^ s1) < keep * 2**32``.

  Args:
    seeds: ``uint32 [2]`` (:func:`dropout_seeds`, :func:`salted_seeds`).
    keep: keep probability in ``(0, 1)``.
    shape: mask shape (fewer than 2**32 elements).

  Returns:
    bool mask of ``shape``.
  """
  size = int(np.prod(shape))
  if size >= 2**32:
    raise ValueError(f"mask of shape {shape} has too many elements.")
  index = jax.lax.iota(jnp.uint32, size).reshape(shape)
  bits = _fmix32(_fmix32(index + seeds[0]) ^ seeds[1])
  threshold = min(round(keep * 2**32), 2**32 - 1)
  return bits < jnp.uint32(threshold)


def hash_keep_mask(
  key: jax.Array, keep: float, shape: tuple[int, ...]
) -> jax.Array:
  """Bernoulli(``keep``) mask from a counter-based hash of the element index.

  Two 32-bit seeds are drawn from ``key`` (the only call into the JAX PRNG);
  each element's bits are ``fmix(fmix(index + s0) ^ s1)``, compared with
  ``keep * 2**32`` (:func:`hash_mask_from_seeds`). Elementwise 32-bit
  integer arithmetic that XLA fuses into the consumer, roughly 7x cheaper on
  CPU than drawing the bits with ``jax.random`` (threefry or rbg); the mask
  has the same distribution (keep probability exact to 2**-32) but not the
  same bits as ``jax.random.bernoulli``.

  Args:
    key: PRNG key.
    keep: keep probability in ``(0, 1)``.
    shape: mask shape (fewer than 2**32 elements).

  Returns:
    bool mask of ``shape``.
  """
  return hash_mask_from_seeds(dropout_seeds(key), keep, shape)


class HashDropout(nn.Module):
  """Inverted dropout (rng "dropout") with :func:`hash_keep_mask` masks.

  Same semantics as ``flax.linen.Dropout`` (each element kept with
  probability ``1 - rate`` and scaled by ``1 / (1 - rate)``), with cheap
  masks; ``exact_rng=True`` uses ``flax.linen.Dropout`` itself.

  Attributes:
    rate: drop probability.
    exact_rng: draw the mask with ``jax.random.bernoulli``.
  """

  rate: float
  exact_rng: bool = False

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool, seeds: jax.Array | None = None
  ) -> jax.Array:
    """Returns ``x`` with dropout applied (identity in eval).

    Args:
      x: any shape.
      train: dropout on.
      seeds: ``uint32 [2]`` from :func:`dropout_seeds`, salted here with
        this module's path (no PRNG call); ``None`` draws them from the
        ``"dropout"`` rng. Ignored with ``exact_rng``.
    """
    if self.exact_rng:
      return nn.Dropout(self.rate, deterministic=not train)(x)
    if not train or self.rate == 0.0:
      return x
    if self.rate == 1.0:
      return jnp.zeros_like(x)
    keep = 1.0 - self.rate
    if seeds is None:
      mask = hash_keep_mask(self.make_rng("dropout"), keep, x.shape)
    else:
      mask = hash_mask_from_seeds(salted_seeds(seeds, self.path), keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


class LayerNorm(nn.Module):
  """LayerNorm over the last axis, parameters ``scale`` and ``bias``.

  The same parameters and (up to rounding) output as ``flax.linen.LayerNorm``
  but written as ``(x - mean) * rsqrt(var + eps) * scale + bias`` with a
  two-pass variance, which XLA CPU fuses without materialising the
  broadcast scale, and with a closed-form backward pass (:func:`layer_norm`).

  Attributes:
    epsilon: added to the variance.
  """

  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalises ``x [..., D]``."""
    d = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (d,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (d,), jnp.float32)
    return layer_norm(x, scale, bias, self.epsilon)


def _layer_norm_stats(x, epsilon):
  mean = jnp.mean(x, axis=-1, keepdims=True)
  centred = x - mean
  var = jnp.mean(centred * centred, axis=-1, keepdims=True)
  return centred, mean, jax.lax.rsqrt(var + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> jax.Array:
  """``(x - mean) * rsqrt(var + eps) * scale + bias`` over the last axis.

  Two-pass variance. The backward pass is the closed form (``xhat`` the
  normalised input, ``r = rsqrt(var + eps)``, ``h = g * scale``):
  ``dx = r * (h - mean(h) - xhat * mean(h * xhat))``,
  ``dscale = sum(g * xhat)``, ``dbias = sum(g)``, recomputing ``xhat`` from
  the saved ``x``, mean and ``r`` instead of differentiating the forward
  pass's reductions one by one.

  Args:
    x: ``[..., D]``.
    scale: ``[D]``.
    bias: ``[D]``.
    epsilon: added to the variance.

  Returns:
    ``[..., D]``.
  """
  return _layer_norm_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_fwd(x, scale, bias, epsilon):
  centred, mean, rstd = _layer_norm_stats(x, epsilon)
  return centred * rstd * scale + bias, (x, mean, rstd, scale, bias)


def _layer_norm_bwd(epsilon, residuals, g):
  del epsilon
  x, mean, rstd, scale, bias = residuals
  xhat = (x - mean) * rstd
  tokens = tuple(range(x.ndim - 1))
  h = g * scale
  dx = rstd * (
    h
    - jnp.mean(h, axis=-1, keepdims=True)
    - xhat * jnp.mean(h * xhat, axis=-1, keepdims=True)
  )
  dscale = jnp.sum(g * xhat, axis=tokens)
  dbias = jnp.sum(g, axis=tokens)
  return (
    dx.astype(x.dtype),
    dscale.astype(scale.dtype),
    dbias.astype(bias.dtype),
  )


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class WindowAttention(nn.Module):
  """Multi-head self-attention inside windows with relative-position bias.

  Attributes:
    dim: token width ``D`` (divisible by ``num_heads``).
    num_heads: attention heads.
    window: ``(wh, ww)``.
    qkv_bias: bias in the qkv projection.
    attn_drop: dropout on the attention weights.
    proj_drop: dropout after the output projection.
    exact_dropout_rng: dropout masks from ``jax.random`` (slow on CPU)
      instead of :func:`hash_keep_mask`.
  """

  dim: int
  num_heads: int
  window: tuple[int, int]
  qkv_bias: bool = True
  attn_drop: float = 0.0
  proj_drop: float = 0.0
  exact_dropout_rng: bool = False

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    allowed: jax.Array | None,
    *,
    train: bool,
    seeds: jax.Array | None = None,
  ) -> jax.Array:
    """Attends within each window.

    Args:
      x: ``[B, nW, N, D]`` tokens, ``N = wh * ww``.
      allowed: bool broadcastable to ``[B, nW, N, N]`` (query, key), or
        ``None`` for full attention inside each window.
      train: dropout on.
      seeds: dropout seed words (see :class:`HashDropout`) or ``None``.

    Returns:
      ``[B, nW, N, D]``.
    """
    b, nw, n, d = x.shape
    wh, ww = self.window
    if n != wh * ww or d != self.dim or d % self.num_heads:
      raise ValueError(
        f"x must have shape [B, nW, N={wh * ww}, D={self.dim}] with D "
        f"divisible by {self.num_heads} heads, got {x.shape}."
      )
    hd = d // self.num_heads
    qkv = TokenDense(3 * d, use_bias=self.qkv_bias, name="qkv")(x)
    qkv = qkv.reshape(b, nw, n, 3, self.num_heads, hd)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    logits = window_logits(q * hd**-0.5, k)
    table = self.param(
      "relative_position_bias",
      nn.initializers.truncated_normal(0.02),
      ((2 * wh - 1) * (2 * ww - 1), self.num_heads),
    )
    bias = table[relative_position_index(self.window)]  # [N, N, heads]
    logits = logits + jnp.transpose(bias, (2, 0, 1)).astype(logits.dtype)
    if allowed is not None:
      allowed = allowed[:, :, None]  # heads axis
    weights = masked_softmax(logits, allowed)
    weights = HashDropout(self.attn_drop, self.exact_dropout_rng)(
      weights, train=train, seeds=seeds
    )
    out = jnp.einsum("bwhqk,bwkhc->bwqhc", weights, v).reshape(b, nw, n, d)
    out = TokenDense(d, name="proj")(out)
    return HashDropout(self.proj_drop, self.exact_dropout_rng)(
      out, train=train, seeds=seeds
    )


class ShiftedWindowAttention(nn.Module):
  """(S)W-MSA on a token map ``[B, H, W, D] -> [B, H, W, D]``.

  Cyclic shift by ``-shift``, window partition, :class:`WindowAttention`
  with the shifted-window region mask (tokens that are not neighbours in
  the original map never attend to each other) and, given ``visible``, with
  invisible tokens removed from the keys; then the reverse shift.

  Attributes:
    dim: token width.
    num_heads: attention heads.
    window: ``(wh, ww)``.
    shift: ``(sh, sw)``.
    qkv_bias: bias in the qkv projection.
    attn_drop: dropout on attention weights.
    proj_drop: dropout after the output projection.
    exact_dropout_rng: see :class:`WindowAttention`.
  """

  dim: int
  num_heads: int
  window: tuple[int, int]
  shift: tuple[int, int] = (0, 0)
  qkv_bias: bool = True
  attn_drop: float = 0.0
  proj_drop: float = 0.0
  exact_dropout_rng: bool = False

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    visible: jax.Array | None = None,
    *,
    train: bool,
    seeds: jax.Array | None = None,
  ) -> jax.Array:
    """Attends within (shifted) windows.

    Args:
      x: ``[B, H, W, D]`` tokens (already layer-normalised).
      visible: bool ``[B, H, W]`` or ``None``.
      train: dropout on.
      seeds: dropout seed words (see :class:`HashDropout`) or ``None``.

    Returns:
      ``[B, H, W, D]``.
    """
    _, h, w, d = x.shape
    win, shift = window_geometry(h, w, self.window, self.shift)
    roll = (-shift[0], -shift[1])
    if any(shift):
      x = jnp.roll(x, roll, axis=(1, 2))
    allowed = None
    if any(shift):
      allowed = jnp.asarray(shifted_window_mask(h, w, win, shift))[None]
    if visible is not None:
      vis = jnp.roll(visible, roll, axis=(1, 2)) if any(shift) else visible
      keys = window_partition(vis, win)[:, :, None, :]  # [B, nW, 1, N]
      allowed = keys if allowed is None else jnp.logical_and(allowed, keys)
    y = WindowAttention(
      d,
      self.num_heads,
      win,
      self.qkv_bias,
      self.attn_drop,
      self.proj_drop,
      self.exact_dropout_rng,
      name="window",
    )(window_partition(x, win), allowed, train=train, seeds=seeds)
    y = window_reverse(y, win, h, w)
    if any(shift):
      y = jnp.roll(y, shift, axis=(1, 2))
    return y


class SwinBlock(nn.Module):
  """(Shifted-)window transformer block ``[B, H, W, D] -> [B, H, W, D]``.

  ``x + DropPath(SW-MSA(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``; see
  :func:`window_geometry` for windows larger than the map.

  Attributes:
    dim: token width.
    num_heads: attention heads.
    window: ``(wh, ww)``.
    shift: ``(sh, sw)`` cyclic shift, ``(0, 0)`` for a plain window block.
    mlp_ratio: MLP hidden width / ``dim``.
    qkv_bias: bias in the qkv projection.
    drop: dropout after the attention projection and in the MLP.
    attn_drop: dropout on attention weights.
    drop_path: stochastic-depth rate.
    gelu_approximate: tanh GELU instead of the exact erf form.
    exact_dropout_rng: see :class:`WindowAttention`.
  """

  dim: int
  num_heads: int
  window: tuple[int, int]
  shift: tuple[int, int] = (0, 0)
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop: float = 0.0
  attn_drop: float = 0.0
  drop_path: float = 0.0
  gelu_approximate: bool = False
  exact_dropout_rng: bool = False

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    visible: jax.Array | None = None,
    *,
    train: bool,
    seeds: jax.Array | None = None,
  ) -> jax.Array:
    """Applies the block.

    Args:
      x: ``[B, H, W, D]``.
      visible: bool ``[B, H, W]`` or ``None`` (all visible).
      train: dropout / stochastic depth on.
      seeds: ``uint32 [2]`` from :func:`dropout_seeds`, shared by every
        dropout and stochastic-depth site (each salts them with its path),
        or ``None``: each site draws from the ``"dropout"`` rng.

    Returns:
      ``[B, H, W, D]`` (invisible tokens zero).
    """
    if x.ndim != 4 or x.shape[-1] != self.dim:
      raise ValueError(
        f"x must have shape [B, H, W, D={self.dim}], got {x.shape}."
      )
    d = x.shape[-1]
    y = LayerNorm(1e-5, name="norm1")(x)
    y = ShiftedWindowAttention(
      d,
      self.num_heads,
      self.window,
      self.shift,
      self.qkv_bias,
      self.attn_drop,
      self.drop,
      self.exact_dropout_rng,
      name="attn",
    )(y, visible, train=train, seeds=seeds)
    x = x + DropPath(self.drop_path, name="drop_path1")(
      y, train=train, seeds=seeds
    )
    y = LayerNorm(1e-5, name="norm2")(x)
    y = TokenDense(int(d * self.mlp_ratio), name="mlp_fc1")(y)
    y = nn.gelu(y, approximate=self.gelu_approximate)
    y = HashDropout(self.drop, self.exact_dropout_rng)(
      y, train=train, seeds=seeds
    )
    y = TokenDense(d, name="mlp_fc2")(y)
    y = HashDropout(self.drop, self.exact_dropout_rng)(
      y, train=train, seeds=seeds
    )
    x = x + DropPath(self.drop_path, name="drop_path2")(
      y, train=train, seeds=seeds
    )
    if visible is not None:
      x = jnp.where(visible[..., None], x, 0.0)
    return x


class PatchMerging(nn.Module):
  """2x2 patch merging ``[B, H, W, D] -> [B, H/2, W/2, 2D]``.

  The four neighbours are concatenated in the order (0,0), (1,0), (0,1),
  (1,1) (row offset fastest), layer-normalised and mapped linearly (no bias)
  to ``2D``.
  """

  @nn.compact
  def __call__(
    self, x: jax.Array, visible: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array | None]:
    """Merges 2x2 neighbourhoods.

    Args:
      x: ``[B, H, W, D]`` with even ``H`` and ``W``.
      visible: bool ``[B, H, W]`` or ``None``.

    Returns:
      ``(x [B, H/2, W/2, 2D], visible [B, H/2, W/2] or None)``; a merged
      token is visible if any of its four inputs is.
    """
    b, h, w, d = x.shape
    if h % 2 or w % 2:
      raise ValueError(f"patch merging needs even H and W, got {x.shape}.")
    x = x.reshape(b, h // 2, 2, w // 2, 2, d)
    x = jnp.transpose(x, (0, 1, 3, 4, 2, 5)).reshape(b, h // 2, w // 2, 4 * d)
    x = LayerNorm(1e-5, name="norm")(x)
    x = TokenDense(2 * d, use_bias=False, name="reduction")(x)
    if visible is None:
      return x, None
    visible = visible.reshape(b, h // 2, 2, w // 2, 2).any(axis=(2, 4))
    return x, visible
