"""Runs the claims suites, resumably, and writes the table and charts.

Layout under the suite's ``workdir``::

  <paper>/<setting>/seed<k>/<run>/      a training workdir (checkpoints,
                                        config.json, metrics) + score.json
  <paper>/<setting>/raw_input.json      the raw-input probe of the setting
  claims.md, claims_<paper>.png         the aggregated table and charts
  <paper>/lr_grid/seed<k>/lr<rate>/<run>/
                                        the learning-rate grid's runs
  lr_grid.md, lr_grid.json              the grid's table and choices

A run with a ``score.json`` is done and skipped; an unfinished run resumes
from its last checkpoint (``msjax.train.train_and_evaluate``), so a killed
suite continues where it stopped. Seeds are ``0 .. seeds - 1``.
"""

import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from msjax import compile_cache
from msjax.claims import report, scoring, settings, suites
from msjax.methods import METHODS
from msjax.train import evaluation
from msjax.train.errors import ConfigError
from msjax.train.loop import train_and_evaluate

__all__ = ["SCORE_FILE", "grid_row", "run_claims", "run_lr_grid", "run_one"]

SCORE_FILE = "score.json"


def _write_json(path: pathlib.Path, payload: dict) -> None:
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
  os.replace(tmp, path)


def run_one(
  run: suites.Run,
  suite: suites.Suite,
  seed_dir: pathlib.Path,
  with_random: bool,
) -> dict:
  """Trains and scores one run in ``seed_dir / run.name`` (or reads it).

  A run with a ``score.json`` is done: its payload is returned as it is;
  an unfinished run resumes from its checkpoint. ``run.init_from`` names a
  run of the same ``seed_dir`` whose final parameters start this one.

  Returns:
    ``{"scores": ..., "wall_s": ...}``, with ``"random"`` (the same scores
    of a freshly initialised model) when ``with_random``.
  """
  workdir = seed_dir / run.name
  done = workdir / SCORE_FILE
  if done.is_file():
    return json.loads(done.read_text())
  config = run.config
  if run.init_from:
    config = config.copy_and_resolve_references()
    config.train.init_from = str(seed_dir / run.init_from)
  start = time.perf_counter()
  outcome = train_and_evaluate(
    config, str(workdir), step_export_dir=_step_export_dir()
  )
  method = METHODS[config.method]
  _, variables = evaluation.restore_variables(str(workdir), config)
  scores = scoring.score_variables(
    method, variables, config, suite.tasks, suite.headline
  )
  for key, value in (outcome.get("metrics") or {}).items():
    if key.startswith("sel_rate/"):
      scores[key] = float(value)
  payload = {"scores": scores, "wall_s": time.perf_counter() - start}
  if with_random:
    key = jax.random.fold_in(jax.random.key(config.seed + 1), 0)
    random = scoring.random_variables(method, config, key)
    payload["random"] = scoring.score_variables(
      method, random, config, suite.tasks, "probe"
    )
  _write_json(done, payload)
  return payload


def _step_export_dir() -> str | None:
  """The exported steps beside JAX's compilation cache, if it is on.

  The seeds of a run share one traced step (the seed is its argument).
  """
  if not jax.config.jax_enable_compilation_cache:
    return None
  return compile_cache.step_export_dir(
    jax.config.jax_compilation_cache_dir or None
  )


def _prepare(papers: Sequence[str], workdir: str, budget: str) -> pathlib.Path:
  """Checks papers and budget, makes ``workdir``, turns the cache on."""
  for paper in papers:
    if paper not in suites.PAPERS:
      raise ConfigError(
        f"paper must be one of {tuple(suites.PAPERS)}, got {paper!r}."
      )
  if budget not in suites.BUDGETS:
    raise ConfigError(
      f"budget must be one of {tuple(suites.BUDGETS)}, got {budget!r}."
    )
  root = pathlib.Path(workdir)
  if root.exists() and not root.is_dir():
    raise ConfigError(f"workdir {workdir} exists and is not a directory.")
  root.mkdir(parents=True, exist_ok=True)
  if not jax.config.jax_compilation_cache_dir:
    # Seeds and settings repeat the same programs: compile each once.
    jax.config.update("jax_compilation_cache_dir", str(root / ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  return root


def _selector(
  papers: Sequence[str], budget: str, only: Sequence[str]
) -> Callable[[suites.Suite], suites.Suite]:
  """``suite -> suite`` keeping the runs named in ``only`` (all if empty)."""
  known = {
    r.name for p in papers for r in suites.suite(p, "default", 0, budget).runs
  }
  unknown = sorted(set(only) - known)
  if unknown:
    raise ConfigError(
      f"unknown runs {unknown}; the suites have {sorted(known)}."
    )

  def selected(suite: suites.Suite) -> suites.Suite:
    if not only:
      return suite
    runs = tuple(r for r in suite.runs if r.name in only)
    order = tuple(r.label for r in runs)
    return suite._replace(runs=runs, order=order)

  return selected


def run_claims(
  papers: Sequence[str],
  workdir: str,
  *,
  seeds: int = 3,
  budget: str = "default",
  setting_names: Sequence[str] = tuple(settings.SETTINGS),
  only: Sequence[str] = (),
  log: Callable[[str], None] = print,
) -> pathlib.Path:
  """Runs (or resumes) the suites and writes ``claims.md`` and the charts.

  Args:
    papers: keys of :data:`msjax.claims.suites.PAPERS`.
    workdir: the suite directory.
    seeds: number of seeds (``0 .. seeds - 1``), at least 1.
    budget: a key of :data:`msjax.claims.suites.BUDGETS`.
    setting_names: keys of :data:`msjax.claims.settings.SETTINGS`.
    only: run names to keep (e.g. ``("promobal", "supervised_concat")``;
      empty: every run). Rows left out are absent from the table and the
      claims that need them say "not measured".
    log: progress sink (one line per finished run).

  Returns:
    The path of ``claims.md``.

  Raises:
    ConfigError: an unknown paper, setting or budget, or ``seeds < 1``.
  """
  if seeds < 1:
    raise ConfigError(f"seeds must be >= 1, got {seeds}.")
  root = _prepare(papers, workdir, budget)
  for name in setting_names:
    if name not in settings.SETTINGS:
      raise ConfigError(
        f"setting must be one of {tuple(settings.SETTINGS)}, got {name!r}."
      )
  results: dict = {}
  selected = _selector(papers, budget, only)
  total = sum(
    len(selected(suites.suite(p, s, 0, budget)).runs) * seeds
    for p in papers
    for s in setting_names
  )
  finished = 0
  for paper in papers:
    for setting in setting_names:
      setting_dir = root / paper / setting
      setting_dir.mkdir(parents=True, exist_ok=True)
      entry = results.setdefault(paper, {}).setdefault(
        setting, {"seeds": {}, "raw_input": None, "suite": None}
      )
      for seed in range(seeds):
        suite = selected(suites.suite(paper, setting, seed, budget))
        entry["suite"] = suite
        seed_dir = setting_dir / f"seed{seed}"
        per_run = {}
        for k, run in enumerate(suite.runs):
          payload = run_one(run, suite, seed_dir, with_random=k == 0)
          per_run[run.label] = payload
          finished += 1
          log(
            f"[{finished}/{total}] {paper} {setting} seed {seed} {run.name}:"
            f" headline {payload['scores']['headline']:.3f}"
            f" ({payload['wall_s']:.0f} s)"
          )
        entry["seeds"][seed] = per_run
      raw_path = setting_dir / "raw_input.json"
      if not raw_path.is_file():
        first = entry["suite"].runs[0].config
        _write_json(
          raw_path, scoring.raw_input_scores(first, entry["suite"].tasks)
        )
      entry["raw_input"] = json.loads(raw_path.read_text())
  return report.write(root, results, budget=budget, seeds=seeds)


def grid_row(paper: str, name: str, row: dict) -> dict:
  """A row of ``lr_grid.md`` from a run's scores per rate and seed.

  Args:
    paper: the suite's paper.
    name: the run's name in the suite.
    row: ``{"label", "scores": {rate: {seed: headline}}}`` (rates as
      ``%g`` strings).

  Returns:
    ``row`` with ``name``, ``headline`` (mean per rate), ``best`` (the rate
    of the best mean) and ``used`` (the suite's rate,
    :data:`msjax.claims.suites.LEARNING_RATES`), as
    :func:`msjax.claims.report.write_lr_grid` reads it.
  """
  headline = {
    rate: float(np.mean(list(by_seed.values())))
    for rate, by_seed in row["scores"].items()
  }
  return {
    **row,
    "name": name,
    "headline": headline,
    "best": float(max(headline, key=headline.get)),
    "used": suites.LEARNING_RATES[paper][name],
  }


def run_lr_grid(
  papers: Sequence[str],
  workdir: str,
  *,
  budget: str = "default",
  only: Sequence[str] = (),
  grid_seeds: Sequence[int] = suites.GRID_SEEDS,
  log: Callable[[str], None] = print,
) -> pathlib.Path:
  """Runs (or resumes) the learning-rate grid and writes ``lr_grid.md``.

  Every run of each paper's suite is trained at every rate of
  :data:`msjax.claims.suites.LR_GRID` and every seed of ``grid_seeds``,
  ``default`` setting; the table shows each run's headline per rate (mean
  and sample std over the grid's seeds), the best rate (highest mean) and
  the rate the suite uses (:data:`~msjax.claims.suites.LEARNING_RATES`).

  Args:
    papers: keys of :data:`msjax.claims.suites.PAPERS`.
    workdir: the suite directory (the grid lives in ``<paper>/lr_grid/``).
    budget: a key of :data:`msjax.claims.suites.BUDGETS`.
    only: run names to keep (empty: every run); the other runs' rows stay
      in the table from an earlier call on the same seeds.
    grid_seeds: the grid's seeds (keep them apart from the table's seeds
      ``0 .. seeds - 1``).
    log: progress sink (one line per finished run).

  Returns:
    The path of ``lr_grid.md``.

  Raises:
    ConfigError: an unknown paper, budget or run, or no grid seed.
  """
  root = _prepare(papers, workdir, budget)
  selected = _selector(papers, budget, only)
  grid_seeds = tuple(int(s) for s in grid_seeds)
  if not grid_seeds:
    raise ConfigError("the learning-rate grid needs at least one seed.")
  # Papers gridded by earlier calls stay in the table.
  grid_path = root / "lr_grid.json"
  grid: dict = json.loads(grid_path.read_text()) if grid_path.is_file() else {}
  total = (
    sum(
      len(selected(suites.suite(p, "default", 0, budget)).runs) for p in papers
    )
    * len(suites.LR_GRID)
    * len(grid_seeds)
  )
  finished = 0
  for paper in papers:
    rows: dict = {}
    for seed in grid_seeds:
      for rate in suites.LR_GRID:
        suite = selected(
          suites.suite(paper, "default", seed, budget, learning_rate=rate)
        )
        seed_dir = root / paper / "lr_grid" / f"seed{seed}" / f"lr{rate:g}"
        for run in suite.runs:
          payload = run_one(run, suite, seed_dir, with_random=False)
          row = rows.setdefault(run.name, {"label": run.label, "scores": {}})
          row["scores"].setdefault(f"{rate:g}", {})[str(seed)] = payload[
            "scores"
          ]["headline"]
          finished += 1
          log(
            f"[{finished}/{total}] lr grid {paper} {run.name} seed {seed}"
            f" lr {rate:g}: headline {payload['scores']['headline']:.3f}"
            f" ({payload['wall_s']:.0f} s)"
          )
    # Runs left out by ``only`` keep their rows from an earlier call on the
    # same seeds.
    earlier = grid.get(paper, {})
    if earlier.get("seeds") == list(grid_seeds):
      rows = {
        **{row["name"]: row for row in earlier["rows"]},
        **rows,
      }
    rows = {name: grid_row(paper, name, row) for name, row in rows.items()}
    order = [r.name for r in suites.suite(paper, "default", 0, budget).runs]
    grid[paper] = {
      "seeds": list(grid_seeds),
      "rows": [rows[name] for name in order if name in rows],
    }
  _write_json(grid_path, grid)
  return report.write_lr_grid(root, grid, budget=budget)
