"""Kernel benchmark: msjax vs PyTorch eager vs OTT-JAX, same process.

    python benchmarks/kernels.py [--quick] [--out PATH] [--only NAME ...]

For every row the candidate implementations are timed *interleaved* (one
blocked call of each per round, so machine-load drift hits all of them
alike) after a warm-up; at least 25 rounds and as many as fill 2 s (up to
2000: a 0.3 ms call needs hundreds for a stable median on a noisy machine);
the table shows medians over the rounds and the speedup
``baseline_time / msjax_time``. The first call of each jitted
function (trace + compile + run) is reported apart as ``compile_ms``. Rows
whose kernels are not importable (E2's Pro-FD / SaMoBal / Pro-UCL, torch,
ott-jax) are skipped with a message. Every row also checks that the
candidates agree (max abs difference of the outputs or losses).

Sinkhorn rows also report the achieved bandwidth, taking as traffic one
read of the ``[B, K]`` scores plus one write of the codes, against the
bandwidth of a jitted copy-like op (``x * 2``) measured in the same run.

Results go to ``benchmarks/results/kernels_<platform>.json`` (on an
accelerator ``kernels_<platform>_<device kind>.json``) with versions,
device, thread counts and the XLA / allocator environment. On a GPU the
PyTorch baselines run on CUDA (``--torch-device``; each call synchronised
before the clock stops) at PyTorch's default full-float32 matrix products,
like msjax's kernels (which pin ``Precision.HIGHEST``); OTT-JAX runs at
JAX's default precision.

Settings: the headline column ``msjax`` is JAX as a user gets it from
``import msjax``: JAX's default CPU dispatch (a program of more than a few
kilobytes runs on a worker thread while the caller waits) and glibc's
default malloc. Beside it, ``msjax_tuned`` comes from a second process of
this script (``--tuned``, started by the first) with every JAX program on
the calling thread and glibc malloc keeping freed memory for reuse
(:mod:`msjax.host_memory` level ``single_arena``); each process times its
own PyTorch baselines, so every ratio is within one process. ``--no-tuned``
skips the second process. The JSON records the settings and the load
average (``os.getloadavg()``) before and after every row.

Baselines: PyTorch eager in its fastest natural form (``torch``; Pro-FD:
the scaling form ``K = exp(-cost / eps)``, ``u = a / (v @ K.T)``,
``v = b / (u @ K)``, forward and backward by autograd; Sinkhorn: SwAV's
in-place ``distributed_sinkhorn``), and for Pro-FD also the log-domain form
(``torch_log``). OTT-JAX where it is installed. The log-domain Pro-FD
baseline is timed in its own interleaved rounds with msjax
(``msjax_vs_torch_log`` in the JSON): it allocates and frees hundreds of
MB per call, and glibc's returning that memory to the system made every
implementation timed beside it fault its own buffers in again (msjax at
``C = 31``: 1.4 -> 2.4 ms; PyTorch's scaling form: 2.3 -> 2.8 ms).
"""

import argparse
import functools
import importlib
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from msjax import host_memory
from msjax.kernels.sinkhorn import sinkhorn_knopp

try:
  import torch
except ImportError:  # pragma: no cover - optional
  torch = None
try:
  from ott.geometry import geometry as ott_geometry
  from ott.problems.linear import linear_problem as ott_problem
  from ott.solvers.linear import sinkhorn as ott_sinkhorn
except ImportError:  # pragma: no cover - optional
  ott_sinkhorn = None

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _devices  # noqa: E402

if torch is not None:
  import _torch_reference as torch_ref  # noqa: E402

ENV_KEYS = (
  "XLA_FLAGS",
  "JAX_PLATFORMS",
  "MALLOC_MMAP_MAX_",
  "MALLOC_MMAP_THRESHOLD_",
  "MALLOC_TRIM_THRESHOLD_",
  "MALLOC_TOP_PAD_",
  "GLIBC_TUNABLES",
  "LD_PRELOAD",
  "OMP_NUM_THREADS",
  "MKL_NUM_THREADS",
  "TF_CPP_MIN_LOG_LEVEL",
)


class Timing(NamedTuple):
  """How long each row is timed.

  Attributes:
    repeats: at least this many interleaved rounds.
    min_seconds: and as many more (up to 2000) as fill this long: a
      sub-millisecond call needs hundreds of rounds for a stable median on
      a noisy machine.
  """

  repeats: int
  min_seconds: float


def _block(x):
  """Waits for JAX results (torch calls on CUDA synchronise themselves)."""
  if torch is not None and isinstance(x, torch.Tensor):
    return x
  return jax.block_until_ready(x)


LOAD_BEFORE: list = []


def time_row(
  impls: dict[str, Callable[[], object]], timing: Timing, warmup: int = 2
) -> tuple[dict, dict, int]:
  """Interleaved rounds: ``({impl: median_s}, {impl: first_s}, rounds)``."""
  LOAD_BEFORE[:] = [os.getloadavg()]
  first = {}
  for name, fn in impls.items():
    start = time.perf_counter()
    _block(fn())
    first[name] = time.perf_counter() - start
    for _ in range(warmup - 1):
      _block(fn())
  samples = {name: [] for name in impls}

  def one_round():
    for name, fn in impls.items():
      start = time.perf_counter()
      _block(fn())
      samples[name].append(time.perf_counter() - start)

  start = time.perf_counter()
  one_round()
  round_s = time.perf_counter() - start
  wanted = int(timing.min_seconds / max(round_s, 1e-9))
  rounds = max(timing.repeats, min(2000, wanted))
  for _ in range(rounds - 1):
    one_round()
  medians = {k: statistics.median(v) for k, v in samples.items()}
  return medians, first, rounds


def _to_np(x):
  if torch is not None and isinstance(x, torch.Tensor):
    return x.detach().cpu().numpy()
  return np.asarray(x)


def _max_diff(outputs: dict, ref: str = "msjax") -> dict:
  base = _to_np(outputs[ref])
  return {
    k: float(np.max(np.abs(_to_np(v) - base)))
    for k, v in outputs.items()
    if k != ref
  }


# --------------------------------------------------------------- Sinkhorn


def _torch_tensor(array: np.ndarray, device: str):
  return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def sinkhorn_rows(shapes, timing: Timing, device: str):
  rows = []
  for batch, num_protos in shapes:
    rng = np.random.default_rng(0)
    scores_np = rng.uniform(-1, 1, (batch, num_protos)).astype(np.float32)
    scores = jnp.asarray(scores_np)
    msjax_fn = jax.jit(
      functools.partial(sinkhorn_knopp, epsilon=0.05, num_iters=3)
    )
    impls = {"msjax": lambda s=scores, f=msjax_fn: f(s)}
    if torch is not None:
      scores_t = _torch_tensor(scores_np, device)
      impls["torch"] = _devices.synchronised(
        lambda s=scores_t: torch_ref.swav_sinkhorn(s), device
      )
    if ott_sinkhorn is not None:
      for name, lse_mode in (("ott", True), ("ott_kernel_mode", False)):
        solver = ott_sinkhorn.Sinkhorn(
          lse_mode=lse_mode,
          min_iterations=3,
          max_iterations=3,
          inner_iterations=1,
          threshold=0.0,
        )

        def solve(s, solver=solver, batch=batch):
          geom = ott_geometry.Geometry(cost_matrix=-s, epsilon=0.05)
          return solver(ott_problem.LinearProblem(geom)).matrix * batch

        impls[name] = functools.partial(jax.jit(solve), scores)
    copy = jax.jit(lambda x: x * 2.0)
    impls["copy_x2"] = functools.partial(copy, scores)
    times, first, rounds = time_row(impls, timing)
    outputs = {k: fn() for k, fn in impls.items() if k != "copy_x2"}
    traffic = 2 * scores_np.nbytes
    rows.append(
      dict(
        kernel="sinkhorn_knopp",
        shape=dict(B=batch, K=num_protos),
        times_ms={k: v * 1e3 for k, v in times.items()},
        loadavg=dict(before=LOAD_BEFORE[0], after=os.getloadavg()),
        rounds=rounds,
        compile_ms={k: v * 1e3 for k, v in first.items()},
        max_abs_diff_vs_msjax=_max_diff(outputs),
        bandwidth_gbs=dict(
          msjax=traffic / times["msjax"] / 1e9,
          copy_x2=traffic / times["copy_x2"] / 1e9,
        ),
      )
    )
  return rows


# ----------------------------------------------------- E2's kernels (lazy)


def _lazy(module: str, name: str):
  try:
    return getattr(importlib.import_module(module), name)
  except (ImportError, AttributeError) as err:
    print(f"  skipped: {module}.{name} not available ({err})")
    return None


def _unit(rng, shape):
  x = rng.normal(size=shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _torch_grads(loss_fn, *tensors):
  def run():
    leaves = [t.detach().requires_grad_(True) for t in tensors]
    loss = loss_fn(*leaves)
    grads = torch.autograd.grad(loss, leaves)
    return loss.detach(), grads

  return _devices.synchronised(run, str(tensors[0].device.type))


def _grad_row(kernel, shape, impls, timing: Timing, apart=()):
  """Times value-and-grad implementations and compares their values.

  ``apart`` names baselines timed in their own interleaved rounds with
  msjax (``times_ms["msjax_vs_<name>"]`` is msjax's median there): a
  baseline that allocates and frees hundreds of MB per call (PyTorch's
  log-domain Pro-FD) makes glibc hand memory back to the system, and every
  implementation timed in the same rounds then pays page faults it does
  not cause itself.
  """
  together = {k: v for k, v in impls.items() if k not in apart}
  times, first, rounds = time_row(together, timing)
  times = dict(times)
  for name in apart:
    pair = {"msjax": impls["msjax"], name: impls[name]}
    pair_times, pair_first, _ = time_row(pair, timing)
    times[name] = pair_times[name]
    times[f"msjax_vs_{name}"] = pair_times["msjax"]
    first[name] = pair_first[name]
  outputs = {k: fn()[0] for k, fn in impls.items()}
  return dict(
    kernel=kernel,
    shape=shape,
    times_ms={k: v * 1e3 for k, v in times.items()},
    loadavg=dict(before=LOAD_BEFORE[0], after=os.getloadavg()),
    rounds=rounds,
    compile_ms={k: v * 1e3 for k, v in first.items()},
    max_abs_diff_vs_msjax=_max_diff(outputs),
  )


def pro_fd_rows(configs, timing: Timing, device: str):
  pro_fd = _lazy("msjax.kernels.distillation", "pro_fd")
  if pro_fd is None:
    return []
  rows = []
  for batch, num_classes, width in configs:
    rng = np.random.default_rng(1)
    z_np, p_np = _unit(rng, (batch, width)), _unit(rng, (num_classes, width))
    y_np = rng.integers(0, num_classes, batch).astype(np.int32)
    step = jax.jit(
      jax.value_and_grad(lambda z, p, y: pro_fd(z, y, p)[0], argnums=(0, 1))
    )
    z, p, y = jnp.asarray(z_np), jnp.asarray(p_np), jnp.asarray(y_np)
    impls = {"msjax": functools.partial(step, z, p, y)}
    if torch is not None:
      y_t = _torch_tensor(y_np, device).long()
      for name, fn in (
        ("torch", torch_ref.pro_fd_scaling),
        ("torch_log", torch_ref.pro_fd),
      ):
        impls[name] = _torch_grads(
          lambda z, p, y_t=y_t, fn=fn: fn(z, y_t, p),
          _torch_tensor(z_np, device),
          _torch_tensor(p_np, device),
        )
    rows.append(
      _grad_row(
        "pro_fd fwd+bwd",
        dict(B=batch, C=num_classes, D=width),
        impls,
        timing,
        apart=("torch_log",) if "torch_log" in impls else (),
      )
    )
  return rows


def samobal_rows(configs, timing: Timing, device: str):
  select = _lazy("msjax.kernels.selection", "samobal_select")
  if select is None:
    return []
  rows = []
  for batch, num_mod, width in configs:
    rng = np.random.default_rng(2)
    z_np = _unit(rng, (num_mod, batch, width))
    p_np = _unit(rng, (10, width))
    y_np = rng.integers(0, 10, batch).astype(np.int32)
    noise_np = rng.gumbel(size=(batch, num_mod, width)).astype(np.float32)
    cot_np = rng.normal(size=(batch, width)).astype(np.float32)

    def loss(z, p, y, noise, cot):
      return jnp.sum(select(z, p, y, noise=noise).z_fus * cot)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    args = [jnp.asarray(a) for a in (z_np, p_np, y_np, noise_np, cot_np)]
    impls = {"msjax": functools.partial(step, *args)}
    if torch is not None:
      y_t = _torch_tensor(y_np, device).long()
      noise_t = _torch_tensor(noise_np, device)
      cot_t = _torch_tensor(cot_np, device)
      impls["torch"] = _torch_grads(
        lambda z, p, y_t=y_t, noise_t=noise_t, cot_t=cot_t: torch.sum(
          torch_ref.samobal_select(z, p, y_t, noise_t) * cot_t
        ),
        _torch_tensor(z_np, device),
        _torch_tensor(p_np, device),
      )
    rows.append(
      _grad_row(
        "samobal_select straight-through fwd+bwd",
        dict(B=batch, M=num_mod, D=width),
        impls,
        timing,
      )
    )
  return rows


def pro_ucl_rows(configs, timing: Timing, device: str):
  pro_ucl = _lazy("msjax.kernels.contrastive", "pro_ucl")
  if pro_ucl is None:
    return []
  rows = []
  for batch, width, num_classes, num_mod in configs:
    rng = np.random.default_rng(3)
    z_np = _unit(rng, (num_mod, batch, width))
    p_np = _unit(rng, (num_classes, width))
    y_np = rng.integers(0, num_classes, batch).astype(np.int32)
    step = jax.jit(
      jax.value_and_grad(lambda z, p, y: pro_ucl(z, y, p)[0], argnums=(0, 1))
    )
    z, p, y = jnp.asarray(z_np), jnp.asarray(p_np), jnp.asarray(y_np)
    impls = {"msjax": functools.partial(step, z, p, y)}
    if torch is not None:
      y_t = _torch_tensor(y_np, device).long()
      impls["torch"] = _torch_grads(
        lambda z, p, y_t=y_t: torch_ref.pro_ucl(z, y_t, p),
        _torch_tensor(z_np, device),
        _torch_tensor(p_np, device),
      )
    rows.append(
      _grad_row(
        "pro_ucl fwd+bwd",
        dict(B=batch, D=width, C=num_classes, M=num_mod),
        impls,
        timing,
      )
    )
  return rows


# ------------------------------------------------------------------ main


def _meta(jax_threads: int, malloc: dict, torch_device: str) -> dict:
  meta = dict(
    python=platform.python_version(),
    machine=platform.machine(),
    processor=platform.processor(),
    jax=jax.__version__,
    jaxlib=importlib.import_module("jaxlib").__version__,
    numpy=np.__version__,
    backend=jax.default_backend(),
    device=str(jax.devices()[0].device_kind),
    device_count=jax.device_count(),
    cpu_count=os.cpu_count(),
    jax_cpu_threads=jax_threads,
    matmul_precision=str(jax.config.jax_default_matmul_precision),
    cpu_async_dispatch=bool(jax.config.read("jax_cpu_enable_async_dispatch")),
    env={k: os.environ.get(k) for k in ENV_KEYS},
    allocator=os.environ["LD_PRELOAD"]
    if os.environ.get("LD_PRELOAD")
    else malloc["allocator"],
    malloc=malloc,
  )
  if torch is not None:
    meta.update(
      torch=torch.__version__,
      torch_threads=torch.get_num_threads(),
      torch_interop_threads=torch.get_num_interop_threads(),
      torch_device=torch_device,
      torch_float32_matmul_precision=torch.get_float32_matmul_precision(),
    )
    if torch_device == "cuda":
      meta["torch_cuda_device"] = torch.cuda.get_device_name()
  if ott_sinkhorn is not None:
    meta["ott_jax"] = importlib.import_module("ott").__version__
  return meta


def _ratio(times: dict, name: str) -> float:
  """``name``'s time over msjax's, timed in the same rounds."""
  return times[name] / times.get(f"msjax_vs_{name}", times["msjax"])


def _print_rows(rows):
  for row in rows:
    times = row["times_ms"]
    shape = " ".join(f"{k}={v}" for k, v in row["shape"].items())
    cells = "  ".join(f"{k} {v:8.3f}" for k, v in times.items())
    speed = "  ".join(
      f"{k}/msjax {_ratio(times, k):5.2f}x"
      for k in times
      if k not in ("msjax", "copy_x2", "msjax_tuned")
      and not k.startswith("msjax_vs_")
    )
    if "tuned" in row:
      tuned = row["tuned"]["times_ms"]
      speed += "  | tuned: " + "  ".join(
        f"{k}/msjax {_ratio(tuned, k):5.2f}x"
        for k in tuned
        if k.startswith("torch")
      )
    print(f"{row['kernel']:<42} {shape:<22} {cells}  | {speed}")
    if "bandwidth_gbs" in row:
      bw = row["bandwidth_gbs"]
      print(
        f"{'':<42} bandwidth msjax {bw['msjax']:.2f} GB/s, copy"
        f" {bw['copy_x2']:.2f} GB/s; compile_ms "
        f"{ {k: round(v, 1) for k, v in row['compile_ms'].items()} }"
      )
    print(f"{'':<42} max|diff| vs msjax {row['max_abs_diff_vs_msjax']}")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--quick", action="store_true", help="fewer repeats (for smoke runs)"
  )
  parser.add_argument("--out", type=pathlib.Path, default=None)
  parser.add_argument(
    "--tuned",
    action="store_true",
    help="this process runs JAX on the calling thread with the single_arena"
    " malloc (the second process; see the module docstring)",
  )
  parser.add_argument(
    "--no-tuned",
    action="store_true",
    help="skip the second (tuned) process",
  )
  parser.add_argument(
    "--torch-device",
    choices=["auto", "cpu", "cuda"],
    default="auto",
    help="device of the PyTorch baselines (auto: cuda when JAX runs on a GPU"
    " and torch sees one, else cpu)",
  )
  parser.add_argument(
    "--only",
    nargs="*",
    default=None,
    choices=["sinkhorn", "pro_fd", "samobal", "pro_ucl"],
  )
  args = parser.parse_args(argv)
  malloc = host_memory.reuse_freed_memory(
    "single_arena" if args.tuned else "default"
  )
  print(f"host malloc: {malloc}")
  if args.tuned:
    jax.config.update("jax_cpu_enable_async_dispatch", False)
  timing = Timing(repeats=5, min_seconds=0.0) if args.quick else Timing(25, 2.0)
  jax_threads = len(os.sched_getaffinity(0))
  device = _devices.torch_device(args.torch_device)
  if torch is not None:
    torch.set_num_threads(jax_threads)
    print(f"torch baselines on {device}")
  else:
    print("torch not importable: PyTorch columns skipped")
  if ott_sinkhorn is None:
    print("ott-jax not importable: OTT columns skipped")

  sections = {
    "sinkhorn": lambda: sinkhorn_rows(
      [(256, 512), (1024, 3000), (4096, 3000)], timing, device
    ),
    "pro_fd": lambda: pro_fd_rows(
      [(256, 6, 128), (256, 31, 128), (256, 100, 128)], timing, device
    ),
    "samobal": lambda: samobal_rows(
      [(256, 2, 512), (256, 3, 1024)], timing, device
    ),
    "pro_ucl": lambda: pro_ucl_rows(
      [(256, 128, 10, 2), (1024, 128, 10, 2)], timing, device
    ),
  }
  tuned_proc = None
  if not args.tuned and not args.no_tuned:
    tuned_out = pathlib.Path(tempfile.mkdtemp()) / "tuned.json"
    command = [sys.executable, __file__, "--tuned", "--out", str(tuned_out)]
    command += ["--quick"] if args.quick else []
    command += ["--torch-device", args.torch_device]
    command += ["--only", *args.only] if args.only else []
  rows = []
  for name, run in sections.items():
    if args.only and name not in args.only:
      continue
    print(f"[{name}]")
    new = run()
    _print_rows(new)
    rows.extend(new)
  if not args.tuned and not args.no_tuned:
    # After this process's rows, not beside them: two timed processes on a
    # 2-core machine would share its cores.
    print("[tuned settings: second process]")
    tuned_proc = subprocess.run(command, capture_output=True, text=True)
    if tuned_proc.returncode == 0:
      tuned_rows = json.loads(tuned_out.read_text())["rows"]
      for row, tuned in zip(rows, tuned_rows, strict=True):
        row["tuned"] = {k: tuned[k] for k in ("times_ms", "loadavg", "rounds")}
        row["times_ms"]["msjax_tuned"] = tuned["times_ms"]["msjax"]
      _print_rows(rows)
    else:
      print(tuned_proc.stdout[-2000:], tuned_proc.stderr[-2000:])
  meta = _meta(jax_threads, malloc, device)
  meta["settings"] = "tuned" if args.tuned else "jax_defaults"
  meta["tuned_column"] = (
    "second process: calling-thread dispatch, single_arena malloc"
    if tuned_proc is not None and tuned_proc.returncode == 0
    else None
  )
  result = dict(
    meta=meta,
    repeats=timing.repeats,
    min_row_seconds=timing.min_seconds,
    warmup=2,
    statistic="median of interleaved blocked calls (>= repeats rounds,"
    " more to fill min_row_seconds)",
    rows=rows,
  )
  backend = jax.default_backend()
  if backend != "cpu":  # name the accelerator: kernels_gpu_nvidia_h100....
    backend = f"{backend}_{_devices.device_slug()}"
  out = args.out or (
    pathlib.Path(__file__).resolve().parent
    / "results"
    / f"kernels_{backend}.json"
  )
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
