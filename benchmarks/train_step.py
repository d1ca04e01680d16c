"""Train-step throughput per method at its paper-size model.

    python benchmarks/train_step.py [--batch 8] [--steps 10] [--methods a,b]

For each method: the synthetic experiment config with the method's
paper-size ``model``/``loss`` sections, one global batch on every local
device, the jitted train step compiled once (timed apart), then the median
time of ``--steps`` steps (``block_until_ready`` each). Prints a table and
writes ``benchmarks/results/train_step_<platform>.json`` (after every
method, so a run stopped part-way keeps the methods it finished).
"""

import argparse
import json
import pathlib
import platform
import statistics
import time

import jax
import numpy as np

from msjax.train import config_lib, runtime, sharding
from msjax.train.feed import BatchFeed
from msjax.train.step import TrainSetup

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
  sections = method.default_config(size)
  with config.unlocked():
    for key in ("model", "loss"):
      for field, value in sections[key].items():
        if field not in ("stage", "num_classes"):
          config[key][field] = value
  config_lib.apply_overrides(
    config, [f"train.batch_size={batch}", "train.total_steps=1000"]
  )
  return config, method


def bench(name: str, batch: int, steps: int) -> dict:
  config, method = _config(name, batch)
  source = runtime.open_source(config.data, "train")
  mesh = sharding.make_mesh(config.train.mesh)
  feed = BatchFeed(source, config, mesh)
  host = feed.host_batch(0)
  setup = TrainSetup(method, config, mesh, host)
  state = setup.init_fn()
  batch_arrays = feed.global_batch(host)
  start = time.perf_counter()
  state, metrics = setup.step_fn(state, batch_arrays)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = setup.step_fn(state, batch_arrays)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  params = sum(np.size(x) for x in jax.tree.leaves(state["params"]))
  return {
    "method": name,
    "batch_size": batch,
    "num_params": int(params),
    "compile_and_first_step_s": compile_s,
    "median_step_s": median,
    "steps_per_s": 1.0 / median,
    "samples_per_s": batch / median,
    "loss_finite": bool(np.isfinite(float(metrics["loss"]))),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--methods", default=",".join(CASES))
  parser.add_argument("--out", default="")
  args = parser.parse_args()
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
    rows.append(bench(name, args.batch, args.steps))
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
