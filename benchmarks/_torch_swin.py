"""PyTorch eager SWIN encoder, the same architecture as msjax's SwinEncoder.

Benchmark baseline only (never imported by msjax or its tests): lets
benchmarks/models.py time msjax's ``SwinMODSeismic`` / ``SwinMODAcoustic``
against PyTorch in the same process. Written from msjax's architecture
(msjax/nn/swin_encoder.py, swin.py, windows.py), which follows FOCAL's
PyTorch SW-Transformer layout, as the plain eager code a PyTorch user would
write: ``nn.Linear`` / ``nn.LayerNorm`` / ``nn.Dropout``, exact (erf) GELU,
a relative-position bias table gathered through a precomputed index buffer,
shifted windows by ``torch.roll`` with an additive ``-inf`` region mask,
per-sample Bernoulli drop-path, 2x2 patch merging with the neighbours in
msjax's order (0,0), (1,0), (0,1), (1,1), and a strided ``Conv2d`` +
LayerNorm patch embedding on the zero-padded input grid. Tokens are kept
channels-last ``[B, H, W, D]`` as in msjax. Only the full-visibility path
(no MAE masking) is implemented. The window geometry (effective window and
shift, relative-position index, shifted-window region mask) is msjax's own
numpy code (:mod:`msjax.nn.windows`), turned into torch buffers once.

Agreement (float32, eval mode, batch 2, msjax init params copied in with
:func:`load_flax_params`, CPU): max |torch - msjax| of the output features
is 7.6e-6 for ``SwinMODSeismic`` (output max |.| 6.6) and 1.0e-5 for
``SwinMODAcoustic`` (output max |.| 6.9), i.e. ~1e-6 relative; with the
bias tables redrawn at std 3 (so that a wrong gather of the bias table,
mask sign or roll direction would show) still 1.0e-5 of 7.3 and 1.1e-5 of
8.9. Both modules have exactly msjax's parameter counts (5,001,952 and
6,186,592; 11,188,544 for the pair).
Run ``python benchmarks/_torch_swin.py`` to re-check.
"""

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from msjax.nn.windows import (
  relative_position_index,
  shifted_window_mask,
  window_geometry,
)

__all__ = [
  "TorchSwinEncoder",
  "count_params",
  "load_flax_params",
  "make_torch_swin_step",
  "max_abs_diff_eval",
  "torch_swin_from_flax",
  "torch_swin_mod_acoustic",
  "torch_swin_mod_seismic",
]

SEISMIC_SHAPE = (2, 10, 20)  # [C, H, W] of the MOD seismic STFT
ACOUSTIC_SHAPE = (2, 10, 1600)  # [C, H, W] of the MOD acoustic STFT


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(v, int):
    return (v, v)
  a, b = v
  return (int(a), int(b))


def _region_mask(
  size: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]
) -> torch.Tensor:
  """Additive ``[nW, N, N]`` mask (0 or ``-inf``) of the shifted windows."""
  allowed = torch.from_numpy(shifted_window_mask(*size, window, shift))
  return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


class DropPath(nn.Module):
  """Stochastic depth: zeroes the residual branch per sample."""

  def __init__(self, rate: float):
    super().__init__()
    self.rate = rate

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if not self.training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask / keep


class WindowAttention(nn.Module):
  """(Shifted-)window multi-head self-attention on ``[B, H, W, D]``."""

  def __init__(
    self,
    dim: int,
    num_heads: int,
    size: tuple[int, int],
    window: tuple[int, int],
    shift: tuple[int, int],
    qkv_bias: bool,
    attn_drop: float,
    proj_drop: float,
  ):
    super().__init__()
    self.window, self.shift = window_geometry(*size, window, shift)
    self.num_heads = num_heads
    self.scale = (dim // num_heads) ** -0.5
    wh, ww = self.window
    self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
    self.proj = nn.Linear(dim, dim)
    self.attn_drop = nn.Dropout(attn_drop)
    self.proj_drop = nn.Dropout(proj_drop)
    self.relative_position_bias = nn.Parameter(
      torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads)
    )
    nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
    self.register_buffer(
      "relative_index",
      torch.from_numpy(relative_position_index(self.window)),
      persistent=False,
    )
    if any(self.shift):
      self.register_buffer(
        "attn_mask",
        _region_mask(size, self.window, self.shift),
        persistent=False,
      )
    else:
      self.attn_mask = None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, h, w, d = x.shape
    wh, ww = self.window
    sh, sw = self.shift
    if sh or sw:
      x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    # Window partition: [B * nW, N, D], windows and tokens row-major.
    nw, n = (h // wh) * (w // ww), wh * ww
    x = x.view(b, h // wh, wh, w // ww, ww, d).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b * nw, n, d)
    qkv = self.qkv(x).view(b * nw, n, 3, self.num_heads, d // self.num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B * nW, heads, N, hd]
    attn = (q * self.scale) @ k.transpose(-2, -1)
    bias = self.relative_position_bias[self.relative_index.view(-1)]
    attn = attn + bias.view(n, n, -1).permute(2, 0, 1)
    if self.attn_mask is not None:
      attn = attn.view(b, nw, self.num_heads, n, n) + self.attn_mask[:, None]
      attn = attn.view(b * nw, self.num_heads, n, n)
    attn = self.attn_drop(attn.softmax(dim=-1))
    y = (attn @ v).transpose(1, 2).reshape(b * nw, n, d)
    y = self.proj_drop(self.proj(y))
    # Window reverse and un-shift.
    y = y.view(b, h // wh, w // ww, wh, ww, d).permute(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, h, w, d)
    if sh or sw:
      y = torch.roll(y, shifts=(sh, sw), dims=(1, 2))
    return y


class SwinBlock(nn.Module):
  """``x + DropPath(SW-MSA(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``."""

  def __init__(
    self,
    dim: int,
    num_heads: int,
    size: tuple[int, int],
    window: tuple[int, int],
    shift: tuple[int, int],
    mlp_ratio: float,
    qkv_bias: bool,
    drop: float,
    attn_drop: float,
    drop_path: float,
    gelu: str,
  ):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-5)
    self.attn = WindowAttention(
      dim, num_heads, size, window, shift, qkv_bias, attn_drop, drop
    )
    self.drop_path = DropPath(drop_path)
    self.norm2 = nn.LayerNorm(dim, eps=1e-5)
    hidden = int(dim * mlp_ratio)
    self.mlp_fc1 = nn.Linear(dim, hidden)
    self.mlp_fc2 = nn.Linear(hidden, dim)
    self.mlp_drop = nn.Dropout(drop)
    self.gelu = {"exact": "none", "tanh": "tanh"}[gelu]

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = x + self.drop_path(self.attn(self.norm1(x)))
    y = F.gelu(self.mlp_fc1(self.norm2(x)), approximate=self.gelu)
    y = self.mlp_drop(self.mlp_fc2(self.mlp_drop(y)))
    return x + self.drop_path(y)


class PatchMerging(nn.Module):
  """2x2 merge ``[B, H, W, D] -> [B, H/2, W/2, 2D]``, row offset fastest."""

  def __init__(self, dim: int):
    super().__init__()
    self.norm = nn.LayerNorm(4 * dim, eps=1e-5)
    self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, h, w, d = x.shape
    x = x.view(b, h // 2, 2, w // 2, 2, d).permute(0, 1, 3, 4, 2, 5)
    x = x.reshape(b, h // 2, w // 2, 4 * d)
    return self.reduction(self.norm(x))


class TorchSwinEncoder(nn.Module):
  """Hierarchical SWIN encoder ``[B, C, H, W] -> [B, E]`` (msjax layout).

  Same knobs and defaults as ``msjax.nn.SwinEncoder`` (without the MAE
  path), plus the static input geometry: ``input_size = (H, W)`` and
  ``in_chans``, needed at construction because the windows (and so the
  bias-table shapes) of the deeper stages depend on the padded grid.
  ``gelu`` is ``"exact"`` (erf, msjax's default) or ``"tanh"``.
  """

  def __init__(
    self,
    input_size: tuple[int, int],
    patch_size: tuple[int, int],
    in_chans: int = 2,
    window: tuple[int, int] = (3, 3),
    embed_dim: int = 64,
    depths: Sequence[int] = (2, 2, 4),
    num_heads: int | Sequence[int] = 4,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    drop_rate: float = 0.2,
    attn_drop_rate: float = 0.2,
    drop_path_rate: float = 0.1,
    out_dim: int | None = 256,
    pool: str = "flatten",
    final_norm: bool = False,
    gelu: str = "exact",
  ):
    super().__init__()
    height, width = input_size
    ph, pw = _pair(patch_size)
    window = _pair(window)
    if height % ph or width % pw:
      raise ValueError(f"input {input_size} not divisible by {patch_size}.")
    if isinstance(num_heads, int):
      num_heads = (num_heads,) * len(depths)
    scale = 2 ** (len(depths) - 1)
    patches = (height // ph, width // pw)
    grid = tuple(
      max(1, math.ceil(n / (w * scale))) * w * scale
      for n, w in zip(patches, window, strict=True)
    )
    self.pad = ((grid[0] - patches[0]) * ph, (grid[1] - patches[1]) * pw)
    self.pool = pool
    self.patch_embed = nn.Conv2d(in_chans, embed_dim, (ph, pw), (ph, pw))
    self.patch_norm = nn.LayerNorm(embed_dim, eps=1e-5)
    rates = np.linspace(0.0, drop_path_rate, sum(depths))
    self.stages = nn.ModuleList()
    self.merges = nn.ModuleList()
    size, block = grid, 0
    for s, depth in enumerate(depths):
      dim = embed_dim * 2**s
      blocks = []
      for i in range(depth):
        shift = (0, 0) if i % 2 == 0 else (window[0] // 2, window[1] // 2)
        blocks.append(
          SwinBlock(
            dim,
            num_heads[s],
            size,
            window,
            shift,
            mlp_ratio,
            qkv_bias,
            drop_rate,
            attn_drop_rate,
            float(rates[block]),
            gelu,
          )
        )
        block += 1
      self.stages.append(nn.Sequential(*blocks))
      if s < len(depths) - 1:
        self.merges.append(PatchMerging(dim))
        size = (size[0] // 2, size[1] // 2)
    self.final_norm = nn.LayerNorm(dim, eps=1e-5) if final_norm else None
    if pool == "flatten":
      if out_dim is None:
        raise ValueError("pool='flatten' needs an out_dim.")
      self.out = nn.Linear(size[0] * size[1] * dim, out_dim)
    elif pool == "mean":
      self.out = nn.Linear(dim, out_dim) if out_dim is not None else None
    else:
      raise ValueError(f"pool must be 'flatten' or 'mean', got {pool!r}.")

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.pad(x, (0, self.pad[1], 0, self.pad[0]))
    h = self.patch_norm(self.patch_embed(x).permute(0, 2, 3, 1))
    for s, stage in enumerate(self.stages):
      h = stage(h)
      if s < len(self.merges):
        h = self.merges[s](h)
    if self.final_norm is not None:
      h = self.final_norm(h)
    if self.pool == "flatten":
      return self.out(h.flatten(1))
    pooled = h.mean(dim=(1, 2))
    return pooled if self.out is None else self.out(pooled)


#: FOCAL MOD seismic encoder: input ``[B, 2, 10, 20]``, patch 1x1.
torch_swin_mod_seismic = functools.partial(
  TorchSwinEncoder, input_size=SEISMIC_SHAPE[1:], patch_size=(1, 1)
)

#: FOCAL MOD acoustic encoder: input ``[B, 2, 10, 1600]``, patch 1x40.
torch_swin_mod_acoustic = functools.partial(
  TorchSwinEncoder, input_size=ACOUSTIC_SHAPE[1:], patch_size=(1, 40)
)


def count_params(module: nn.Module) -> int:
  """Number of trainable parameter elements."""
  return sum(p.numel() for p in module.parameters())


def torch_swin_from_flax(
  flax_model, input_shape: Sequence[int]
) -> TorchSwinEncoder:
  """A :class:`TorchSwinEncoder` with the knobs of a msjax ``SwinEncoder``.

  Args:
    flax_model: a ``msjax.nn.SwinEncoder`` instance.
    input_shape: ``[B, C, H, W]`` (or ``[C, H, W]``) of its input.
  """
  if getattr(flax_model, "pad_tokens", "visible") != "visible":
    raise ValueError("the PyTorch port implements pad_tokens='visible' only.")
  c, h, w = tuple(input_shape)[-3:]
  return TorchSwinEncoder(
    input_size=(h, w),
    patch_size=tuple(flax_model.patch_size),
    in_chans=c,
    window=tuple(flax_model.window),
    embed_dim=flax_model.embed_dim,
    depths=tuple(flax_model.depths),
    num_heads=flax_model.num_heads,
    mlp_ratio=flax_model.mlp_ratio,
    qkv_bias=flax_model.qkv_bias,
    drop_rate=flax_model.drop_rate,
    attn_drop_rate=flax_model.attn_drop_rate,
    drop_path_rate=flax_model.drop_path_rate,
    out_dim=flax_model.out_dim,
    pool=flax_model.pool,
    final_norm=flax_model.final_norm,
    gelu="tanh" if flax_model.gelu_approximate else "exact",
  )


@torch.no_grad()
def load_flax_params(module: TorchSwinEncoder, params) -> None:
  """Copies a msjax ``SwinEncoder`` params pytree into ``module`` in place.

  Dense kernels ``[in, out]`` become Linear weights ``[out, in]``, the conv
  kernel ``HWIO`` becomes ``OIHW``, LayerNorm ``scale`` becomes ``weight``.
  Every torch parameter must be written exactly once.
  """
  written: set[int] = set()

  def put(p: torch.Tensor, value, transform=None) -> None:
    t = torch.from_numpy(np.array(value, dtype=np.float32))
    if transform is not None:
      t = transform(t)
    if t.shape != p.shape:
      raise ValueError(f"shape mismatch {tuple(t.shape)} vs {tuple(p.shape)}")
    p.copy_(t)
    written.add(id(p))

  def dense(lin: nn.Linear, tree) -> None:
    put(lin.weight, tree["kernel"], lambda t: t.t())
    if lin.bias is not None:
      put(lin.bias, tree["bias"])
    elif "bias" in tree:
      raise ValueError("flax Dense has a bias, the torch Linear has none.")

  def norm(ln: nn.LayerNorm, tree) -> None:
    put(ln.weight, tree["scale"])
    put(ln.bias, tree["bias"])

  put(
    module.patch_embed.weight,
    params["patch_embed"]["kernel"],
    lambda t: t.permute(3, 2, 0, 1),
  )
  put(module.patch_embed.bias, params["patch_embed"]["bias"])
  norm(module.patch_norm, params["patch_norm"])
  for s, stage in enumerate(module.stages):
    for i, blk in enumerate(stage):
      tree = params[f"stage{s}_block{i}"]
      norm(blk.norm1, tree["norm1"])
      win = tree["attn"]["window"]
      dense(blk.attn.qkv, win["qkv"])
      dense(blk.attn.proj, win["proj"])
      put(blk.attn.relative_position_bias, win["relative_position_bias"])
      norm(blk.norm2, tree["norm2"])
      dense(blk.mlp_fc1, tree["mlp_fc1"])
      dense(blk.mlp_fc2, tree["mlp_fc2"])
  for s, merge in enumerate(module.merges):
    norm(merge.norm, params[f"merge{s}"]["norm"])
    dense(merge.reduction, params[f"merge{s}"]["reduction"])
  if module.final_norm is not None:
    norm(module.final_norm, params["final_norm"])
  if module.out is not None:
    dense(module.out, params["out"])
  missing = [n for n, p in module.named_parameters() if id(p) not in written]
  if missing:
    raise ValueError(f"parameters not loaded from flax: {missing}")


def max_abs_diff_eval(
  flax_model, params, x_np: np.ndarray, return_scale: bool = False
) -> float | tuple[float, float]:
  """Max |msjax - torch| of the eval-mode features on the same input.

  Args:
    flax_model: a ``msjax.nn.SwinEncoder`` (e.g. ``SwinMODSeismic()``).
    params: its ``init(...)["params"]``.
    x_np: float32 input ``[B, C, H, W]``.
    return_scale: also return ``max |msjax features|``.

  Returns:
    The max abs difference (and the output scale if ``return_scale``).
  """
  import jax.numpy as jnp

  x_np = np.asarray(x_np, np.float32)
  feats, _ = flax_model.apply(
    {"params": params}, jnp.asarray(x_np), None, train=False
  )
  ref = np.asarray(feats, np.float64)
  module = torch_swin_from_flax(flax_model, x_np.shape)
  load_flax_params(module, params)
  module.eval()
  with torch.no_grad():
    out = module(torch.from_numpy(x_np)).double().numpy()
  diff = float(np.max(np.abs(out - ref)))
  if return_scale:
    return diff, float(np.max(np.abs(ref)))
  return diff


def make_torch_swin_step(
  batch: int, gelu: str = "exact", seed: int = 0, device: str = "cpu"
) -> Callable[[], torch.Tensor]:
  """Train-mode fwd+bwd of both MOD encoders as a zero-argument callable.

  Mirrors ``_swin_case`` of benchmarks/models.py: seismic ``[B, 2, 10, 20]``
  and acoustic ``[B, 2, 10, 1600]`` through their encoders (dropout,
  attention dropout and drop-path on), loss = sum of the squared features of
  both, ``loss.backward()`` into all parameters (grads set to ``None``
  first on every call). Returns the detached loss. The callable has the two
  modules as ``step.models`` and their parameter count as
  ``step.num_params``. Thread count is the caller's business
  (``torch.set_num_threads``). On ``device="cuda"`` the callable returns
  without synchronising; the caller waits (``torch.cuda.synchronize``).
  """
  torch.manual_seed(seed)
  models = {
    "seismic": torch_swin_mod_seismic(gelu=gelu).to(device),
    "acoustic": torch_swin_mod_acoustic(gelu=gelu).to(device),
  }
  inputs = {
    "seismic": torch.randn(batch, *SEISMIC_SHAPE).to(device),
    "acoustic": torch.randn(batch, *ACOUSTIC_SHAPE).to(device),
  }
  for m in models.values():
    m.train()

  def step() -> torch.Tensor:
    for m in models.values():
      m.zero_grad(set_to_none=True)
    loss = sum(models[n](inputs[n]).square().sum() for n in models)
    loss.backward()
    return loss.detach()

  step.models = models
  step.num_params = sum(count_params(m) for m in models.values())
  return step


def _main() -> None:
  import jax

  from msjax import nn as mnn

  key = jax.random.key(0)
  rng = np.random.default_rng(0)
  total_flax = total_torch = 0
  for name, factory, shape in (
    ("seismic", mnn.SwinMODSeismic, SEISMIC_SHAPE),
    ("acoustic", mnn.SwinMODAcoustic, ACOUSTIC_SHAPE),
  ):
    model = factory()
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    params = model.init(key, x, train=False)["params"]
    n_flax = int(sum(p.size for p in jax.tree.leaves(params)))
    n_torch = count_params(torch_swin_from_flax(model, x.shape))
    total_flax, total_torch = total_flax + n_flax, total_torch + n_torch
    diff, scale = max_abs_diff_eval(model, params, x, return_scale=True)
    print(
      f"{name:<9} params msjax {n_flax:,} torch {n_torch:,}  "
      f"max|diff| {diff:.3g}  max|out| {scale:.3g}"
    )
  print(f"pair      params msjax {total_flax:,} torch {total_torch:,}")


if __name__ == "__main__":
  _main()
