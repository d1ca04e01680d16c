"""Input pipeline throughput (examples/s) per config and worker count.

    python benchmarks/input.py [--steps 40] [--workers 0,1,2]
        [--configs protomm_paper,promobal_paper,...] [--paper-step]

For each paper config (``experiments/<name>.py`` at its default dataset and
batch size) the script writes, to a temporary directory, an array_record
dataset of noise windows through that dataset's own TFDS builder (same
features, shapes and encoding; the raw files are not needed), then times the
grain pipeline alone: ``msjax.data.loader`` reading this process's batches of
steps from a `RecordSource`, with ``data.num_workers`` = 0 (``data.prefetch``
threads), 1 and 2 worker processes. The README config reads the in-memory
synthetic source. `--steps` steps are timed after ten untimed ones (worker
start-up excluded); each batch is touched as a train step would.

Next to it, the train step's consumption: the jitted ProtoMM step of the
README config (experiments/protomm.py, tiny model, its batch of 64: the
fastest consumer) and, with ``--paper-step``, the paper-size ProtoMM step at
batch 8 (compiles for minutes on 2 cores). ``ratio`` = pipeline examples/s /
step examples/s. The machine's load average is recorded before and after
(other processes share the CPU). Writes
``benchmarks/results/input_<platform>.json``.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time

import jax
import numpy as np

from msjax.data import builders, loader, pipeline
from msjax.data.records import RecordSource
from msjax.train import config_lib, runtime, sharding
from msjax.train.feed import BatchFeed
from msjax.train.step import TrainSetup

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
  "protomm_paper": "experiments/protomm_paper.py",
  "promobal_paper": "experiments/promobal_paper.py",
  "infomae_paper_stage1": "experiments/infomae_paper.py:stage=1",
  "infomae_paper_stage2": "experiments/infomae_paper.py:stage=2",
  "readme_protomm": "experiments/protomm.py",
}


def _noise_builder(data_config, data_dir: str, num_records: int):
  """The config's builder class, writing noise instead of reading raw files."""
  base = builders.BUILDERS[data_config.source]

  class Noise(base, skip_registration=True):
    def missing_files(self):
      return []

    def check_files(self):
      pass

    def split_examples(self):
      shapes = self.modality_shapes()
      rng = np.random.default_rng(0)
      block = {
        m: rng.normal(size=(8, *s)).astype(np.float32)
        for m, s in shapes.items()
      }

      def examples():
        for i in range(num_records):
          example = {
            "signals": {m: block[m][i % 8] for m in shapes},
            "label": i % len(self.class_names()),
            "session": i // 64,
            "time_index": i % 64,
          }
          example.update({k: 0 for k in self.EXTRA_FEATURES})
          yield example

      return {"train": examples()}

  options = {
    k: v
    for k, v in data_config.items()
    if k not in builders._NOT_OPTIONS  # noqa: SLF001 (same selection)
  }
  return Noise(options=options, data_dir=data_dir, manual_dir=data_dir)


def _source(config, data_dir: str):
  data = config.data.base if config.data.source == "paired" else config.data
  if data.source not in builders.BUILDERS:
    return runtime.open_source(config.data, "train"), 0
  records = max(4 * config.train.batch_size, 512)
  builder = builders.prepare(_noise_builder(data, data_dir, records))
  return RecordSource(builder, "train", tuple(data.modalities)), records


def bench_pipeline(config, source, workers: int, steps: int) -> float:
  """Examples/s of this process's batches read through grain."""
  seqs = None
  if config.train.sequence_length > 1:
    seqs = pipeline.sequence_index_for(source, config.train.sequence_length)
  sampler = pipeline.step_indices(
    source, batch_size=config.train.batch_size, seed=0, sequences=seqs
  )
  warm_up = 10  # worker start-up and first reads, not timed
  # Longer than read: the end of a dataset waits for the workers to stop.
  dataset = loader.batch_dataset(source, sampler, num_steps=warm_up + 2 * steps)
  iterator = loader.iterate(
    dataset, num_workers=workers, prefetch=config.data.prefetch
  )
  total = 0.0
  for _ in range(warm_up):
    next(iterator)
  start = time.perf_counter()
  for _ in range(steps):
    _, batch = next(iterator)
    total += sum(float(x.ravel()[0]) for x in batch["signals"].values())
  seconds = time.perf_counter() - start
  if hasattr(iterator, "close"):
    iterator.close()
  return steps * config.train.batch_size / seconds


def bench_step(spec: str, size: str | None, batch: int, steps: int) -> dict:
  """Examples/s the jitted train step consumes (median of `steps`)."""
  config = config_lib.load_config(str(ROOT / spec))
  method = runtime.get_method(config.method)
  if size is not None:
    config_lib.with_sections(config, method.default_config(size))
  config_lib.apply_overrides(config, [f"train.batch_size={batch}"])
  source = runtime.open_source(config.data, "train")
  mesh = sharding.make_mesh(config.train.mesh)
  feed = BatchFeed(source, config, mesh)
  setup = TrainSetup(method, config, mesh, feed.host_batch(0))
  state = setup.init_fn(setup.seed)
  arrays = feed.global_batch(feed.host_batch(0))
  state, metrics = setup.step_fn(state, arrays, setup.seed)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = setup.step_fn(state, arrays, setup.seed)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {
    "config": spec,
    "model_size": size or "config",
    "batch_size": batch,
    "median_step_s": median,
    "examples_per_s": batch / median,
  }


def add_ratios(record: dict) -> None:
  """Pipeline examples/s over the ProtoMM step's, per row.

  ``ratio_to_own_protomm_step``: a paper config's pipeline over the
  paper-size ProtoMM step (when measured), the README config's over the
  README step. ``ratio_to_readme_protomm_step``: every row over the README
  step (tiny model, batch 64: the fastest ProtoMM consumer).
  """
  steps = {r["model_size"]: r["examples_per_s"] for r in record["train_step"]}
  readme = steps["config"]
  paper = steps.get("paper", readme)
  for row in record["pipeline"]:
    own = readme if row["config"] == "readme_protomm" else paper
    row["ratio_to_own_protomm_step"] = row["examples_per_s"] / own
    row["ratio_to_readme_protomm_step"] = row["examples_per_s"] / readme


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--workers", default="0,1,2")
  parser.add_argument("--configs", default=",".join(CONFIGS))
  parser.add_argument("--paper-step", action="store_true")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  device = jax.devices()[0]
  out = pathlib.Path(
    args.out
    or ROOT / "benchmarks" / "results" / f"input_{device.platform}.json"
  )
  record = {
    "platform": device.platform,
    "host": platform.processor() or platform.machine(),
    "cpu_count": os.cpu_count(),
    "load_average_before": os.getloadavg(),
    "steps_timed": args.steps,
    "pipeline": [],
    "train_step": [],
  }
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.configs.split(","):
      config = config_lib.load_config(str(ROOT / CONFIGS[name]))
      source, records = _source(config, os.path.join(tmp, name))
      for workers in map(int, args.workers.split(",")):
        rate = bench_pipeline(config, source, workers, args.steps)
        record["pipeline"].append(
          {
            "config": name,
            "source": type(source).__name__,
            "records": records,
            "batch_size": config.train.batch_size,
            "sequence_length": config.train.sequence_length,
            "num_workers": workers,
            "prefetch": config.data.prefetch,
            "examples_per_s": rate,
          }
        )
        print(f"{name} workers={workers}: {rate:.0f} examples/s", flush=True)
  record["train_step"].append(
    bench_step("experiments/protomm.py", None, 64, 20)
  )
  if args.paper_step:
    record["train_step"].append(
      bench_step("experiments/protomm.py", "paper", 8, 5)
    )
  add_ratios(record)
  record["load_average_after"] = os.getloadavg()
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(record, indent=2))
  for step in record["train_step"]:
    print(
      f"ProtoMM step ({step['model_size']} model, batch"
      f" {step['batch_size']}) consumes {step['examples_per_s']:.0f}"
      " examples/s"
    )
  print(
    f"{'config':<22}{'workers':>8}{'examples/s':>12}{'x own step':>11}"
    f"{'x README step':>14}"
  )
  for row in record["pipeline"]:
    print(
      f"{row['config']:<22}{row['num_workers']:>8}"
      f"{row['examples_per_s']:>12.0f}{row['ratio_to_own_protomm_step']:>11.1f}"
      f"{row['ratio_to_readme_protomm_step']:>14.1f}"
    )
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
