"""Device choices shared by the benchmarks (PyTorch optional)."""

from collections.abc import Callable

import jax

try:
  import torch
except ImportError:  # pragma: no cover - optional
  torch = None

__all__ = ["device_slug", "synchronised", "torch_device"]


def device_slug() -> str:
  """JAX's first device kind for file names: ``nvidia_h100_80gb_hbm3``."""
  return jax.devices()[0].device_kind.lower().replace(" ", "_")


def torch_device(choice: str) -> str:
  """``cpu``/``cuda`` for the PyTorch baselines (``--torch-device``).

  ``auto``: ``cuda`` when JAX runs on a GPU and torch sees one, else
  ``cpu``. Asking for ``cuda`` where torch sees none exits with a message.
  """
  has_cuda = torch is not None and torch.cuda.is_available()
  if choice == "auto":
    return "cuda" if jax.default_backend() == "gpu" and has_cuda else "cpu"
  if choice == "cuda" and not has_cuda:
    raise SystemExit("--torch-device cuda: torch sees no CUDA device")
  return choice


def synchronised(fn: Callable, device: str) -> Callable:
  """``fn`` followed by a CUDA synchronisation on ``cuda``, else ``fn``.

  Decided once, outside the timed calls; the wrapper keeps ``fn``'s
  attributes (``num_params`` of the SWIN baseline).
  """
  if device != "cuda":
    return fn

  def run():
    out = fn()
    torch.cuda.synchronize()
    return out

  run.__dict__.update(fn.__dict__)
  return run
