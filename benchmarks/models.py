"""Encoder forward+backward benchmark (msjax.nn), JSON to benchmarks/results.

Cases (batch 64 unless ``--batch``):

* ``swin_mod``: both FOCAL MOD SWIN encoders (InfoMAE), seismic STFT
  ``[B, 2, 10, 20]`` + acoustic STFT ``[B, 2, 10, 1600]`` (``C`` = real/imag,
  10 intervals, spectrum bins), paper size (~11.2 M parameters together),
  train mode (dropout, attention dropout, stochastic depth on), gradient of
  the summed features w.r.t. all parameters. Reference: FOCAL's PyTorch
  implementation, 2.6 s per batch of 64 on a 2-core CPU (goal < 1.73 s).
* ``swin_mod_mae``: the same with the MAE path (75 % of the patches masked).
* ``swin_mod_tanh_gelu``: ``swin_mod`` with the tanh GELU (not FOCAL's).
* ``swin_mod_exact_rng``: ``swin_mod`` with dropout masks drawn by
  ``jax.random`` (``exact_dropout_rng=True``, as ``flax.linen.Dropout``)
  instead of the default counter-based hash masks; the difference is the
  cost of the JAX PRNG on CPU (about 0.2 s per 10 M mask elements, rbg or
  threefry alike; the SWIN pair draws about 90 M per step).
* ``resnet26_protomm``: the ProtoMM 1-D ResNet-26 on PPG and ACC windows of
  8 s: PPG at 64 Hz ``[B, 1, 512]``, ACC at 32 Hz ``[B, 3, 256]`` (one
  encoder per modality), train mode (batch statistics).

Each case: compile time apart (``lower().compile()``), then ``--warmup``
calls, then the median (and min / max) of ``--repeats`` blocked calls.

PyTorch baseline (``bench`` extra): the ``swin_mod`` and
``swin_mod_tanh_gelu`` cases also time the same two encoders in PyTorch
eager (``benchmarks/_torch_swin.py``, written from msjax's architecture and
checked against it: eval outputs agree to ~1e-5, equal parameter counts),
interleaved call by call with msjax in this process, and report
``speedup_vs_torch``. ``--no-torch`` skips it. When JAX runs on a GPU the
baseline runs on CUDA (``--torch-device``) with TF32 matrix products, as
JAX's default precision does there (``torch_float32_matmul_precision`` in
the JSON), and each call is synchronised before the clock stops. The FOCAL
2.6 s reference and its goal are reported on CPU only.
Allocator: the benchmark first sets glibc malloc to keep and reuse freed
memory on every thread (:mod:`msjax.host_memory`, level ``single_arena``):
with glibc's defaults XLA's temporary arena is a fresh mapping on every call
(about 470,000 page faults per SWIN step). ``--default-malloc`` keeps the
defaults. The setting applies to the PyTorch baseline in the same process.

The JSON is rewritten after every case, so a run stopped part-way keeps the
cases it finished.

Usage: ``python benchmarks/models.py [--cases swin_mod,...] [--repeats 10]``.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from msjax import host_memory
from msjax import nn as mnn

try:
  import torch
except ImportError:  # pragma: no cover - optional
  torch = None
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _devices  # noqa: E402

if torch is not None:
  import _torch_swin  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
FOCAL_TORCH_S = 2.6  # FOCAL PyTorch SWIN fwd+bwd, batch 64, 2-core CPU
GOAL_SPEEDUP = 1.5


def _swin_case(
  batch: int,
  masked: bool,
  gelu_approximate: bool,
  exact_dropout_rng: bool = False,
):
  specs = {
    "seismic": (mnn.SwinMODSeismic, (batch, 2, 10, 20), 1),
    "acoustic": (mnn.SwinMODAcoustic, (batch, 2, 10, 1600), 40),
  }
  models = {
    n: f(gelu_approximate=gelu_approximate, exact_dropout_rng=exact_dropout_rng)
    for n, (f, _, _) in specs.items()
  }
  key = jax.random.key(0)
  inputs, ids = {}, {}
  for i, (name, (_, shape, pw)) in enumerate(specs.items()):
    inputs[name] = jax.random.normal(jax.random.fold_in(key, i), shape)
    n = (shape[2] // 1) * (shape[3] // pw)
    keep = int(n * 0.25)
    perm = jax.vmap(lambda k, n=n: jax.random.permutation(k, n))(
      jax.random.split(jax.random.fold_in(key, 10 + i), batch)
    )
    ids[name] = perm[:, :keep].astype(jnp.int32) if masked else None
  params = {
    n: jax.jit(lambda x, m=m: m.init(key, x, train=False))(inputs[n])["params"]
    for n, m in models.items()
  }

  def loss(params, inputs, rng):
    total = 0.0
    for i, (name, model) in enumerate(models.items()):
      feats, _ = model.apply(
        {"params": params[name]},
        inputs[name],
        ids[name],
        train=True,
        rngs={"dropout": jax.random.fold_in(rng, i)},
      )
      total = total + jnp.sum(feats**2)
    return total

  step = jax.jit(jax.value_and_grad(loss))
  # rbg keys: XLA's RngBitGenerator, much cheaper than threefry on CPU.
  args = (params, inputs, jax.random.key(1, impl="rbg"))
  return step, args, _count(params)


def _resnet_case(batch: int):
  specs = {"ppg": (batch, 1, 512), "acc": (batch, 3, 256)}
  model = mnn.ResNet26_1D()
  key = jax.random.key(0)
  inputs = {
    n: jax.random.normal(jax.random.fold_in(key, i), s)
    for i, (n, s) in enumerate(specs.items())
  }
  variables = {
    n: jax.jit(lambda x: model.init(key, x, train=False))(x)
    for n, x in inputs.items()
  }
  params = {n: v["params"] for n, v in variables.items()}
  stats = {n: v["batch_stats"] for n, v in variables.items()}

  def loss(params, stats, inputs):
    total, new_stats = 0.0, {}
    for name in specs:
      (feats, _), state = model.apply(
        {"params": params[name], "batch_stats": stats[name]},
        inputs[name],
        train=True,
        mutable=["batch_stats"],
      )
      new_stats[name] = state["batch_stats"]
      total = total + jnp.sum(feats**2)
    return total, new_stats

  step = jax.jit(jax.value_and_grad(loss, has_aux=True))
  return step, (params, stats, inputs), _count(params)


def _count(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))


def _timed(fn) -> tuple[float, float]:
  c0, t0 = time.process_time(), time.perf_counter()
  fn()
  return time.perf_counter() - t0, time.process_time() - c0


def _time(step, args, warmup: int, repeats: int, baseline=None) -> dict:
  """Times ``step(*args)``; with ``baseline`` (a callable), interleaved.

  Each round runs one blocked msjax call, then one baseline call, so that
  load drift on a shared machine hits both alike.
  """
  t0 = time.perf_counter()
  compiled = step.lower(*args).compile()
  compile_s = time.perf_counter() - t0

  def run():
    jax.block_until_ready(compiled(*args))

  for _ in range(warmup):
    run()
    if baseline is not None:
      baseline()
  times, cpu_times, base_times = [], [], []
  for _ in range(repeats):
    wall, cpu = _timed(run)
    times.append(wall)
    cpu_times.append(cpu)
    if baseline is not None:
      base_times.append(_timed(baseline)[0])
  result = {
    "compile_s": compile_s,
    "median_s": statistics.median(times),
    "min_s": min(times),
    "max_s": max(times),
    "times_s": times,
    # CPU seconds this process used per call, over all threads. On a
    # shared, oversubscribed machine median_cpu_s / cores estimates the
    # wall time with the cores to itself (an estimate, not a measurement).
    "median_cpu_s": statistics.median(cpu_times),
  }
  if baseline is not None:
    result["torch_median_s"] = statistics.median(base_times)
    result["torch_times_s"] = base_times
    result["speedup_vs_torch"] = result["torch_median_s"] / result["median_s"]
  return result


def _environment(malloc: dict) -> dict:
  return {
    "malloc": malloc,
    "platform": platform.platform(),
    "python": sys.version.split()[0],
    "jax": jax.__version__,
    "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
    "flax": flax.__version__,
    "optax": optax.__version__,
    "numpy": np.__version__,
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "device_kind": jax.devices()[0].device_kind,
    "cpu_count": os.cpu_count(),
    "affinity_cpus": len(os.sched_getaffinity(0)),
    "load_average_start": os.getloadavg(),
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
    "matmul_precision": str(jax.config.jax_default_matmul_precision),
  }


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--cases",
    default="swin_mod,swin_mod_mae,swin_mod_tanh_gelu,resnet26_protomm",
  )
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument(
    "--out",
    default=None,
    help="JSON path (default: benchmarks/results/models_<device>.json)",
  )
  parser.add_argument(
    "--default-malloc",
    action="store_true",
    help="keep glibc's malloc defaults (see msjax.host_memory)",
  )
  parser.add_argument(
    "--no-torch", action="store_true", help="skip the PyTorch baseline"
  )
  parser.add_argument(
    "--torch-device",
    choices=["auto", "cpu", "cuda"],
    default="auto",
    help="device of the PyTorch baseline (auto: cuda when JAX runs on a GPU)",
  )
  args = parser.parse_args(argv)
  malloc = host_memory.reuse_freed_memory(
    "default" if args.default_malloc else "single_arena"
  )
  builders = {
    "swin_mod": lambda: _swin_case(args.batch, False, False),
    "swin_mod_mae": lambda: _swin_case(args.batch, True, False),
    "swin_mod_tanh_gelu": lambda: _swin_case(args.batch, False, True),
    "swin_mod_exact_rng": lambda: _swin_case(args.batch, False, False, True),
    "resnet26_protomm": lambda: _resnet_case(args.batch),
  }
  use_torch = torch is not None and not args.no_torch
  torch_device = "cpu"
  if use_torch:
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch_device = _devices.torch_device(args.torch_device)
    if torch_device == "cuda" and str(
      jax.config.jax_default_matmul_precision
    ) in ("None", "default", "tensorfloat32", "bfloat16"):
      torch.set_float32_matmul_precision("high")  # TF32, as JAX's default
  torch_gelu = {"swin_mod": "exact", "swin_mod_tanh_gelu": "tanh"}
  env = _environment(malloc)
  if use_torch:
    env["torch"] = torch.__version__
    env["torch_threads"] = torch.get_num_threads()
    env["torch_device"] = torch_device
    env["torch_float32_matmul_precision"] = torch.get_float32_matmul_precision()
    env["torch_cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
  results = {
    "environment": env,
    "batch": args.batch,
    "repeats": args.repeats,
    "warmup": args.warmup,
    "cases": {},
  }
  out = (
    pathlib.Path(args.out)
    if args.out
    else RESULTS / f"models_{_devices.device_slug()}.json"
  )
  out.parent.mkdir(parents=True, exist_ok=True)
  print(
    f"{'case':<22}{'params':>12}{'compile s':>11}{'median s':>10}"
    f"{'min s':>8}{'max s':>8}{'cpu s':>8}{'torch s':>9}"
  )
  for name in args.cases.split(","):
    step, step_args, n_params = builders[name]()
    baseline = None
    if use_torch and name in torch_gelu:
      baseline = _devices.synchronised(
        _torch_swin.make_torch_swin_step(
          args.batch, torch_gelu[name], device=torch_device
        ),
        torch_device,
      )
      if baseline.num_params != n_params:
        raise RuntimeError(
          f"torch baseline has {baseline.num_params} parameters, msjax"
          f" {n_params}"
        )
    res = _time(step, step_args, args.warmup, args.repeats, baseline)
    res["params"] = n_params
    if name.startswith("swin_mod") and jax.default_backend() == "cpu":
      res["focal_torch_reference_s"] = FOCAL_TORCH_S
      res["speedup_vs_focal_reference"] = FOCAL_TORCH_S / res["median_s"]
      res["meets_goal"] = res["speedup_vs_focal_reference"] >= GOAL_SPEEDUP
      cores = len(os.sched_getaffinity(0))
      res["estimated_unshared_s"] = res["median_cpu_s"] / cores
      res["estimated_speedup_unshared"] = (
        FOCAL_TORCH_S / res["estimated_unshared_s"]
      )
    results["cases"][name] = res
    print(
      f"{name:<22}{n_params:>12,}{res['compile_s']:>11.2f}"
      f"{res['median_s']:>10.3f}{res['min_s']:>8.3f}{res['max_s']:>8.3f}"
      f"{res['median_cpu_s']:>8.2f}"
      f"{res.get('torch_median_s', float('nan')):>9.3f}",
      flush=True,
    )
    # Written after every case: a run cut short keeps the finished cases.
    env["load_average_end"] = os.getloadavg()
    out.write_text(json.dumps(results, indent=2))
  print(f"wrote {out}")
  return results


if __name__ == "__main__":
  main()
