"""Learning rates of single runs of the InfoMAE claims suite, on grid seeds.

    python experiments/sweeps/infomae_rates.py --workdir DIR \
        [--runs infomae_0.05,joint_0.05] [--rates 1e-3,3e-3,1e-2] \
        [--seeds 100,101,102]

``msjax claims --lr-grid`` trains every run of a suite at every rate, and
gives each stage 2 its own stage 1 at the same rate. This sweep keeps every
other run at its suite rate (``msjax.claims.suites.LEARNING_RATES``) and
varies only the named runs: a stage-2 run starts from the suite's stage 1
of its seed (trained once per seed, at the suite's stage-1 rate). The
`default` setting and budget, as the grid. A run with a ``score.json``
under ``DIR/seed<k>/<run>_lr<rate>/`` is done, so a killed sweep resumes.
Writes ``DIR/rates.json`` (every run's headline per rate and seed, kept
across calls with other ``--runs``) and ``DIR/lr_grid.md`` (the claims
grid's table: mean ± sample std per rate, the best mean in bold, the rate
the suite uses).
"""

import argparse
import json
import pathlib

import jax

from msjax.claims import report, runner, suites


def _floats(text: str) -> tuple[float, ...]:
  return tuple(float(v) for v in text.split(",") if v)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--runs", default="infomae_0.05,joint_0.05")
  parser.add_argument("--rates", default="1e-3,3e-3,1e-2")
  parser.add_argument("--seeds", default="100,101,102")
  args = parser.parse_args()
  root = pathlib.Path(args.workdir)
  root.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(root / ".jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  names = tuple(n for n in args.runs.split(",") if n)
  seeds = tuple(int(s) for s in args.seeds.split(","))
  path = root / "rates.json"
  results: dict = json.loads(path.read_text()) if path.is_file() else {}
  for seed in seeds:
    suite = suites.suite("infomae", "default", seed, "default")
    runs = {r.name: r for r in suite.runs}
    unknown = sorted(set(names) - set(runs))
    if unknown:
      raise SystemExit(f"unknown runs {unknown}; use some of {sorted(runs)}")
    seed_dir = root / f"seed{seed}"
    for name in names:
      run = runs[name]
      if run.init_from:  # stage 2: the suite's stage 1 of this seed
        first = runner.run_one(
          runs[run.init_from], suite, seed_dir, with_random=False
        )
        print(f"seed {seed} {run.init_from}: {first['scores']['headline']:.3f}")
      for rate in _floats(args.rates):
        config = run.config.copy_and_resolve_references()
        config.optim.learning_rate = rate
        if "discriminators" in config.optim.groups:
          config.optim.groups.discriminators.learning_rate = rate
        variant = run._replace(name=f"{name}_lr{rate:g}", config=config)
        payload = runner.run_one(variant, suite, seed_dir, with_random=False)
        headline = payload["scores"]["headline"]
        row = results.setdefault(name, {"label": run.label, "scores": {}})
        row["scores"].setdefault(f"{rate:g}", {})[str(seed)] = headline
        print(
          f"seed {seed} {name} lr {rate:g}: {headline:.3f}"
          f" ({payload['wall_s']:.0f} s)",
          flush=True,
        )
        path.write_text(json.dumps(results, indent=2))
  rows = [runner.grid_row("infomae", n, row) for n, row in results.items()]
  grid = {"infomae": {"seeds": list(seeds), "rows": rows}}
  print(f"wrote {report.write_lr_grid(root, grid, budget='default')}")


if __name__ == "__main__":
  main()
