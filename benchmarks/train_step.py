"""Train-step throughput per method at its paper-size model.

    python benchmarks/train_step.py [--batch 8] [--steps 10] [--methods a,b]
    python benchmarks/train_step.py --compile-times [--methods a,b]

For each method: the synthetic experiment config with the method's
paper-size ``model``/``loss`` sections, one global batch on every local
device, the jitted train step compiled once (timed apart), then the median
time of ``--steps`` steps (``block_until_ready`` each). Prints a table and
writes ``benchmarks/results/train_step_<platform>.json`` (after every
method, so a run stopped part-way keeps the methods it finished).

``--compile-times``: per method, two fresh processes share an empty JAX
persistent compilation cache and its ``msjax-steps`` directory of exported
train steps (as ``msjax train`` uses them: ``msjax.compile_cache``,
``msjax.train.step_export``): the first traces and compiles cold, the
second finds both warm. Both report the compile + first step (for the
second: loading the stored step, then the executable) and the wall time
from process start to the first step's end (imports, data, init and
compile). ``--no-step-export`` leaves the exported steps out (every process
traces the step; JAX's cache alone). Written to
``benchmarks/results/compile_times_<platform>.json``.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# Before jax and msjax are imported: the startup time includes them.
_PROCESS_START = time.perf_counter()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from msjax import compile_cache  # noqa: E402
from msjax.train import config_lib, runtime, sharding  # noqa: E402
from msjax.train.feed import BatchFeed  # noqa: E402
from msjax.train.step import TrainSetup  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
# method -> (experiment spec, paper model size)
CASES = {
  "protomm": ("experiments/protomm.py", "paper"),
  "promobal": ("experiments/promobal.py", "paper"),
  "infomae_stage1": ("experiments/infomae.py:stage=1", "base"),
  "infomae_stage2": ("experiments/infomae.py:stage=2", "base"),
  "clip": ("experiments/baselines.py:method=clip", "paper"),
  "simclr": ("experiments/baselines.py:method=simclr", "paper"),
  "joint": ("experiments/baselines.py:method=joint", "paper"),
  "slip": ("experiments/baselines.py:method=slip", "paper"),
  "ogm_ge": ("experiments/baselines.py:method=ogm_ge", "paper"),
  "supervised_concat": (
    "experiments/baselines.py:method=supervised_concat",
    "paper",
  ),
  "supervised_sum": ("experiments/baselines.py:method=supervised_sum", "paper"),
  "agm": ("experiments/baselines.py:method=agm", "paper"),
  "mla": ("experiments/baselines.py:method=mla", "paper"),
  "mmpareto": ("experiments/baselines.py:method=mmpareto", "paper"),
  "tnc": ("experiments/baselines.py:method=tnc", "paper"),
  "tstcc": ("experiments/baselines.py:method=tstcc", "paper"),
  "mae": ("experiments/baselines.py:method=mae", "paper"),
  "focal": ("experiments/baselines.py:method=focal", "paper"),
  "gmc": ("experiments/baselines.py:method=gmc", "paper"),
  "cocoa": ("experiments/baselines.py:method=cocoa", "paper"),
  "cav_mae": ("experiments/baselines.py:method=cav_mae", "paper"),
  "moco": ("experiments/baselines.py:method=moco", "paper"),
}


def _config(name: str, batch: int):
  spec, size = CASES[name]
  config = config_lib.load_config(str(ROOT / spec))
  method = runtime.get_method(config.method)
  config_lib.with_sections(config, method.default_config(size))
  config_lib.apply_overrides(
    config, [f"train.batch_size={batch}", "train.total_steps=1000"]
  )
  return config, method


def bench(name: str, batch: int, steps: int, step_export: bool = False) -> dict:
  """One method's compile and step times (module docstring).

  ``step_export``: store / load the traced step beside JAX's persistent
  cache, as ``msjax train`` does (only with a cache directory set).
  """
  config, method = _config(name, batch)
  source = runtime.open_source(config.data, "train")
  mesh = sharding.make_mesh(config.train.mesh)
  feed = BatchFeed(source, config, mesh)
  host = feed.host_batch(0)
  export_dir = None
  if step_export and jax.config.jax_compilation_cache_dir:
    export_dir = compile_cache.step_export_dir(
      jax.config.jax_compilation_cache_dir
    )
  setup = TrainSetup(method, config, mesh, host, export_dir=export_dir)
  state = setup.init_fn(setup.seed)
  batch_arrays = feed.global_batch(host)
  start = time.perf_counter()
  state, metrics = setup.step_fn(state, batch_arrays, setup.seed)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  first_step_wall_s = time.perf_counter() - _PROCESS_START
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = setup.step_fn(state, batch_arrays, setup.seed)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  params = sum(np.size(x) for x in jax.tree.leaves(state["params"]))
  return {
    "method": name,
    "batch_size": batch,
    "num_params": int(params),
    "compile_and_first_step_s": compile_s,
    "process_start_to_first_step_s": first_step_wall_s,
    "median_step_s": median,
    "steps_per_s": 1.0 / median,
    "samples_per_s": batch / median,
    "loss_finite": bool(np.isfinite(float(metrics["loss"]))),
    "step_export": export_dir is not None,
    "step_loaded": bool(getattr(setup.step_fn, "loaded", False)),
  }


def _one_process(name: str, batch: int, cache: str, step_export: bool) -> dict:
  """``bench`` of one method in a fresh process using ``cache``."""
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "row.json"
    env = dict(
      os.environ,
      JAX_COMPILATION_CACHE_DIR=cache,
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.1",
    )
    subprocess.run(
      [sys.executable, __file__, "--methods", name, "--batch", str(batch),
       "--steps", "1", "--out", str(out),
       *([] if step_export else ["--no-step-export"])],
      env=env, check=True, capture_output=True,
    )  # fmt: skip
    return json.loads(out.read_text())["results"][0]


def compile_times(
  methods: list[str], batch: int, out: str = "", step_export: bool = True
) -> None:
  """Cold and warm compile + first step per method (module docstring).

  Written to ``out``, by default
  ``benchmarks/results/compile_times_<platform>.json``.
  """
  device = jax.devices()[0]
  out = (
    pathlib.Path(out)
    if out
    else (
      ROOT / "benchmarks" / "results" / f"compile_times_{device.platform}.json"
    )
  )
  record = {
    "platform": device.platform,
    "device": device.device_kind,
    "host": platform.processor() or platform.machine(),
    "jax": jax.__version__,
    "load_average": os.getloadavg(),
    "step_export": step_export,
    "results": [],
  }
  keys = ("compile_and_first_step_s", "process_start_to_first_step_s")
  for name in methods:
    with tempfile.TemporaryDirectory() as cache:
      cold = _one_process(name, batch, cache, step_export)
      warm = _one_process(name, batch, cache, step_export)
    row = {"method": name, "batch_size": batch}
    row.update({f"cold_{k}": cold[k] for k in keys})
    row.update({f"warm_{k}": warm[k] for k in keys})
    row["warm_step_loaded"] = warm["step_loaded"]
    record["results"].append(row)
    out.write_text(json.dumps(record, indent=2))
    print(
      f"{name:<20} compile+first step cold {cold[keys[0]]:6.1f} s, warm"
      f" {warm[keys[0]]:5.1f} s; process start to first step cold"
      f" {cold[keys[1]]:6.1f} s, warm {warm[keys[1]]:5.1f} s",
      flush=True,
    )
  print(f"wrote {out}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--methods", default=",".join(CASES))
  parser.add_argument("--out", default="")
  parser.add_argument(
    "--compile-times",
    action="store_true",
    help="cold and warm compile per method in fresh processes",
  )
  parser.add_argument(
    "--no-step-export",
    dest="step_export",
    action="store_false",
    help="--compile-times without the exported steps (JAX's cache alone)",
  )
  args = parser.parse_args()
  if args.compile_times:
    compile_times(
      args.methods.split(","), args.batch, args.out, args.step_export
    )
    return
  device = jax.devices()[0]
  out = (
    pathlib.Path(args.out)
    if args.out
    else (
      ROOT / "benchmarks" / "results" / f"train_step_{device.platform}.json"
    )
  )
  out.parent.mkdir(parents=True, exist_ok=True)
  record = {
    "platform": device.platform,
    "device": device.device_kind,
    "num_devices": jax.device_count(),
    "host": platform.processor() or platform.machine(),
    "jax": jax.__version__,
    "steps_timed": args.steps,
    "results": [],
  }
  rows = record["results"]
  for name in args.methods.split(","):
    rows.append(bench(name, args.batch, args.steps, args.step_export))
    print(f"{name}: {rows[-1]['median_step_s']:.4f} s/step", flush=True)
    # Written after every method: a run stopped part-way keeps what it has.
    out.write_text(json.dumps(record, indent=2))
  print(
    f"{'method':<20}{'batch':>6}{'params':>12}{'compile s':>11}"
    f"{'steps/s':>10}{'samples/s':>11}"
  )
  for row in rows:
    print(
      f"{row['method']:<20}{row['batch_size']:>6}{row['num_params']:>12}"
      f"{row['compile_and_first_step_s']:>11.1f}{row['steps_per_s']:>10.2f}"
      f"{row['samples_per_s']:>11.1f}"
    )
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
