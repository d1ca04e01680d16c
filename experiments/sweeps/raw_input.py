"""Every self-supervised method's experiment config against its raw input.

    python experiments/sweeps/raw_input.py --workdir DIR [--seeds 0,1] \
        [--methods protomm,clip,...]

Trains each self-supervised method with its shipped experiment config on the
built-in data (``experiments/protomm.py``, ``experiments/infomae.py`` stage 1
then stage 2 from it, ``experiments/baselines.py:method=<name>``), seed by
seed, and reads the linear probe of ``msjax train``'s final evaluation:
the fused embedding, the same probe on a random encoder and on the
standardised raw input (issue #12: a learned encoder that loses to its raw
input has learned nothing a linear model could not read off the data).
One JSON per run under ``DIR/seed<k>/``: a killed sweep resumes with the
runs it has not finished. Writes ``DIR/raw_input.md``.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

from msjax.train import config_lib
from msjax.train.loop import train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: experiments/baselines.py's methods without a classifier of their own.
BASELINES = config_lib.load_experiment(
  ROOT / "experiments" / "baselines.py"
).SELF_SUPERVISED
#: run name -> experiment spec, in training order (stage 2 needs stage 1).
RUNS = {
  "protomm": "experiments/protomm.py",
  "infomae_stage1": "experiments/infomae.py:stage=1",
  "infomae_stage2": "experiments/infomae.py:stage=2",
  **{m: f"experiments/baselines.py:method={m}" for m in BASELINES},
}


def run_one(name: str, seed: int, seed_dir: pathlib.Path) -> dict:
  """Trains one run (or reads its finished JSON): fused, random, raw."""
  done = seed_dir / f"{name}.json"
  if done.is_file():
    return json.loads(done.read_text())
  config = config_lib.load_config(str(ROOT / RUNS[name]))
  overrides = [f"seed={seed}", "train.progress=off"]
  if name == "infomae_stage2":
    overrides.append(f"train.init_from={seed_dir / 'infomae_stage1'}")
  config_lib.apply_overrides(config, overrides)
  start = time.perf_counter()
  result = train_and_evaluate(config, str(seed_dir / name))["eval"]
  row = {
    "trained": result["trained"]["fused"]["accuracy"],
    "random": result["random"]["fused"]["accuracy"],
    "raw": result["raw_input"]["fused"]["accuracy"],
    "wall_s": time.perf_counter() - start,
  }
  tmp = done.with_suffix(".tmp")
  tmp.write_text(json.dumps(row))
  tmp.replace(done)
  return row


def _cell(values: list[float]) -> str:
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(rows: dict[str, list[dict]]) -> str:
  """Markdown: fused probe, random encoder, raw input, margins, verdict.

  The margins are the smallest over the seeds (each seed's trained probe
  against the same seed's random encoder or raw input).
  """
  lines = [
    "| method | fused probe | random encoder | raw input"
    " | fused - random (min) | fused - raw (min) | beats raw |",
    "|---|---|---|---|---|---|---|",
  ]  # fmt: skip
  for name, runs in rows.items():
    margin = min(r["trained"] - r["raw"] for r in runs)
    over_random = min(r["trained"] - r["random"] for r in runs)
    lines.append(
      f"| {name} | {_cell([r['trained'] for r in runs])} |"
      f" {_cell([r['random'] for r in runs])} |"
      f" {_cell([r['raw'] for r in runs])} | {over_random:+.3f} |"
      f" {margin:+.3f} | {'yes' if margin > 0 else 'NO'} |"
    )
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--methods", default=",".join(RUNS))
  args = parser.parse_args(argv)
  names = args.methods.split(",")
  unknown = sorted(set(names) - set(RUNS))
  if unknown:
    sys.exit(f"unknown methods {unknown}; choose from {sorted(RUNS)}")
  if "infomae_stage2" in names and "infomae_stage1" not in names:
    names.insert(names.index("infomae_stage2"), "infomae_stage1")
  seeds = [int(s) for s in args.seeds.split(",")]
  workdir = pathlib.Path(args.workdir)
  rows: dict[str, list[dict]] = {name: [] for name in names}
  for seed in seeds:
    seed_dir = workdir / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
      row = run_one(name, seed, seed_dir)
      rows[name].append(row)
      print(
        f"seed {seed} {name}: fused {row['trained']:.3f}, random"
        f" {row['random']:.3f}, raw {row['raw']:.3f} ({row['wall_s']:.0f} s)",
        flush=True,
      )
  text = f"# Fused linear probe vs raw input (seeds {args.seeds})\n\n" + table(
    rows
  )
  (workdir / "raw_input.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
