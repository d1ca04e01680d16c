"""The claims suite: aggregation and verdicts, and a resumable smoke run."""

import importlib.util
import json
import pathlib
import re

import jax
import ml_collections
import numpy as np
import pytest

from msjax import cli
from msjax.claims import (
  report,
  run_claims,
  run_lr_grid,
  runner,
  scoring,
  suites,
)
from msjax.data import make_source
from msjax.methods import METHODS, infomae, promobal
from msjax.train import evaluation


def _fake_entry(values):
  """A suite with two rows whose headline per seed is given."""
  runs = tuple(suites.Run(name, name, None) for name in ("A", "B"))
  suite = suites.Suite(
    paper="toy",
    runs=runs,
    tasks=("shared",),
    headline="probe",
    claims=(suites.Claim("A beats B", suites._beats("A", "B")),),
    order=("A", "B"),
  )
  seeds = {
    s: {
      label: {
        "scores": {"headline": v[s], "headline_f1": v[s] / 2},
        "wall_s": 1.0,
      }
      for label, v in values.items()
    }
    for s in range(len(values["A"]))
  }
  return {
    "suite": suite,
    "seeds": seeds,
    "raw_input": {"headline": 0.3, "headline_f1": 0.2},
  }


@pytest.mark.parametrize(
  "a,b,holds",
  [
    ([0.9, 0.8, 0.85], [0.6, 0.62, 0.61], True),  # gap far above the spread
    ([0.9, 0.5, 0.7], [0.6, 0.62, 0.61], False),  # gap inside A's std
  ],
)
def test_table_cells_are_mean_and_sample_std_and_verdict_uses_them(
  tmp_path, a, b, holds
):
  path = report.write(
    tmp_path,
    {"toy": {"default": _fake_entry({"A": a, "B": b})}},
    budget="smoke",
    seeds=3,
  )
  text = path.read_text()
  for label, values in (("A", a), ("B", b)):
    row = re.search(rf"^\| {label} \| ([\d.]+) ± ([\d.]+) \|", text, re.M)
    assert float(row.group(1)) == pytest.approx(np.mean(values), abs=5e-4)
    assert float(row.group(2)) == pytest.approx(
      np.std(values, ddof=1), abs=5e-4
    )
  assert re.search(r"^\| raw input \| 0\.300 ± 0\.000 \| 0\.200", text, re.M)
  assert ("HOLDS: A beats B" in text) == holds
  assert ("FAILS: A beats B" in text) == (not holds)
  assert (tmp_path / "claims_toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdict_reports_the_paired_difference_without_changing_the_rule(
  tmp_path,
):
  # A is 0.01 above B on every seed while the seeds spread by 0.1: the rule
  # (difference above the rows' std) fails; the paired evidence shows it.
  a, b = [0.9, 0.8, 0.7], [0.89, 0.79, 0.69]
  text = report.write(
    tmp_path,
    {"toy": {"default": _fake_entry({"A": a, "B": b})}},
    budget="smoke",
    seeds=3,
  ).read_text()
  (line,) = [x for x in text.splitlines() if "A beats B" in x]
  assert line.startswith("- FAILS: A beats B")
  paired = re.search(
    r"per seed \+([\d.]+) ± ([\d.]+), ahead on (\d) of (\d)", line
  )
  assert paired, line
  assert float(paired.group(1)) == pytest.approx(0.01, abs=5e-4)
  assert float(paired.group(2)) == pytest.approx(0.0, abs=5e-4)
  assert paired.group(3, 4) == ("3", "3")
  # One seed: nothing to pair.
  (tmp_path / "one").mkdir()
  one = report.write(
    tmp_path / "one",
    {"toy": {"default": _fake_entry({"A": a[:1], "B": b[:1]})}},
    budget="smoke",
    seeds=1,
  ).read_text()
  assert "per seed" not in one


# Two of the suite's runs keep the test short (each trains and compiles per
# seed); the left-out ones must show as "not measured".
ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNS = ("promobal", "supervised_concat")


def test_smoke_suite_writes_table_and_resumes_with_more_seeds(tmp_path):
  lines = []
  run_claims(
    ("promobal",),
    str(tmp_path),
    seeds=1,
    budget="smoke",
    setting_names=("default",),
    only=RUNS,
    log=lines.append,
  )
  seed0 = sorted((tmp_path / "promobal/default/seed0").glob("*/score.json"))
  assert [p.parent.name for p in seed0] == sorted(RUNS)
  stamps = {p: p.stat().st_mtime_ns for p in seed0}
  lines.clear()
  path = run_claims(
    ("promobal",),
    str(tmp_path),
    seeds=2,
    budget="smoke",
    setting_names=("default",),
    only=RUNS,
    log=lines.append,
  )
  assert {p: p.stat().st_mtime_ns for p in seed0} == stamps  # not redone
  assert len(lines) == 4 and sum("seed 1" in line for line in lines) == 2
  text = path.read_text()
  for label in (
    "ProMoBal",
    "concat",
    "random encoder (ProMoBal)",
    "raw input",
  ):
    assert re.search(
      rf"^\| {re.escape(label)} \| \d\.\d{{3}} ± \d\.\d{{3}} \|", text, re.M
    ), label
  assert "| sum |" not in text and "| OGM-GE |" not in text  # not in only=
  verdicts = re.findall(r"^- (HOLDS|FAILS): (.*)$", text, re.M)
  assert len(verdicts) == 8
  for left_out in ("sum", "OGM-GE"):
    (about,) = [v for v in verdicts if f"beats {left_out}" in v[1]]
    assert about[0] == "FAILS" and "not measured" in about[1], about
  assert "sel_rate/acc" in text and "own/fused" in text
  score = json.loads(
    (tmp_path / "promobal/default/seed1/promobal/score.json").read_text()
  )
  rates = [v for k, v in score["scores"].items() if k.startswith("sel_rate/")]
  assert len(rates) == 2 and sum(rates) == pytest.approx(1.0, abs=1e-5)
  # ProMoBal aligns no cross-modal space: no retrieval columns.
  assert not any(k.startswith("retrieval") for k in score["scores"])
  _check_inference_sweep(tmp_path / "promobal/default/seed1/promobal", score)


def _check_inference_sweep(run_dir, score):
  """experiments/sweeps/promobal_inference.py on a trained smoke run."""
  path = ROOT / "experiments" / "sweeps" / "promobal_inference.py"
  spec = importlib.util.spec_from_file_location("promobal_inference", path)
  sweep = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sweep)
  row = sweep.score_run(run_dir)
  assert set(row) == set(sweep.RULES)
  # Its SPEC rule is the suite's headline; its summed classifiers are the
  # sum of the per-modality logits of ProMoBal's own predict.
  assert row["spec"] == pytest.approx(score["scores"]["own/fused"], abs=1e-9)
  config = ml_collections.ConfigDict(
    json.loads((run_dir / "config.json").read_text())
  )
  _, variables = evaluation.restore_variables(str(run_dir), config)
  test = make_source(evaluation.eval_data_config(config.data), "test")
  batch = test.get(np.arange(test.num_examples))
  logits = promobal.predict(variables, batch, config)
  summed = sum(logits[m] for m in config.data.modalities)
  expected = np.mean(np.argmax(summed, axis=-1) == batch["label"])
  assert row["classifiers"] == pytest.approx(float(expected), abs=1e-9)
  assert all(0.0 <= v <= 1.0 for v in row.values())


@pytest.mark.parametrize(
  "argv", [["--seeds", "0"], ["--settings", "nope"], ["--runs", "nope"]]
)
def test_bad_claims_arguments_are_one_line_errors(tmp_path, capsys, argv):
  code = cli.main(
    [
      "claims",
      "--paper",
      "promobal",
      "--workdir",
      str(tmp_path),
      "--budget",
      "smoke",
      *argv,
    ]
  )
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and err[0].startswith("msjax: error:")


def test_lr_grid_trains_every_rate_and_seed_once_and_marks_the_best_mean(
  tmp_path, monkeypatch
):
  monkeypatch.setattr(suites, "LR_GRID", (1e-3, 1e-2))
  kwargs = dict(
    budget="smoke",
    only=("supervised_concat",),
    grid_seeds=(7, 8),
    log=lambda _: 0,
  )
  path = run_lr_grid(("promobal",), str(tmp_path), **kwargs)
  run_dir = tmp_path / "promobal/lr_grid/seed{}/lr{}/supervised_concat"
  scores = {
    rate: {
      seed: json.loads(
        (
          pathlib.Path(str(run_dir).format(seed, rate)) / "score.json"
        ).read_text()
      )["scores"]["headline"]
      for seed in ("7", "8")
    }
    for rate in ("0.001", "0.01")
  }
  for seed in (7, 8):
    config = json.loads(
      (
        pathlib.Path(str(run_dir).format(seed, "0.01")) / "config.json"
      ).read_text()
    )
    assert config["optim"]["learning_rate"] == 0.01
    assert config["seed"] == seed
  means = {rate: (v["7"] + v["8"]) / 2 for rate, v in scores.items()}
  best = max(means, key=means.get)
  entry = json.loads((tmp_path / "lr_grid.json").read_text())["promobal"]
  (row,) = entry["rows"]
  assert entry["seeds"] == [7, 8]
  assert row["scores"] == scores and row["best"] == float(best)
  assert row["headline"] == pytest.approx(means, abs=1e-12)
  used = suites.LEARNING_RATES["promobal"]["supervised_concat"]
  cells = []
  for rate, by_seed in scores.items():
    pair = (by_seed["7"], by_seed["8"])
    spread = abs(pair[0] - pair[1]) / 2**0.5  # sample std of two values
    text = f"{sum(pair) / 2:.3f} ± {spread:.3f}"
    cells.append(f"**{text}**" if rate == best else text)
  line = f"| concat | {' | '.join(cells)} | {float(best):g} | {used:g}"
  text = path.read_text()
  assert line in text and "Seeds 7, 8." in text
  stamps = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("score.json"))
  run_lr_grid(("promobal",), str(tmp_path), **kwargs)  # resumes: no training
  assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("score.json")) == (
    stamps
  )


def test_protomm_scores_include_prototype_usage_and_retrieval():
  config = suites.suite("protomm", "default", 0, "smoke").runs[2].config
  method = METHODS[config.method]
  variables = scoring.random_variables(method, config, jax.random.key(0))
  scores = scoring.score_variables(
    method, variables, config, ("shared",), "probe"
  )
  usage = {k: v for k, v in scores.items() if k.startswith("usage/")}
  assert sorted(usage) == ["usage/acc", "usage/ppg"]
  log_k = np.log(config.model.num_prototypes)
  assert all(0.0 < v <= log_k + 1e-6 for v in usage.values()), usage
  # Retrieval: the aligned space of every test window, ranked by cosine.
  test = make_source(evaluation.eval_data_config(config.data), "test")
  batch = test.get(np.arange(test.num_examples))
  aligned = jax.device_get(method.align(variables, batch, config))
  a, b = (np.asarray(x, np.float64) for x in aligned.values())
  labels = np.asarray(batch["label"])
  sims = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (
    b / np.linalg.norm(b, axis=1, keepdims=True)
  ).T
  r1 = [np.mean(np.argmax(s, 1) == np.arange(len(s))) for s in (sims, sims.T)]
  assert scores["retrieval/instance_r1"] == pytest.approx(np.mean(r1))
  shares = np.bincount(labels) / len(labels)
  assert scores["retrieval_chance/class_map"] == pytest.approx(
    np.sum(shares**2)
  )
  assert scores["retrieval_chance/instance_r1"] == pytest.approx(1 / len(a))
  assert 0.0 < scores["retrieval/class_map"] <= 1.0


def test_grid_seeds_flag_parses_a_comma_list_and_refuses_anything_else(
  capsys,
):
  base = ["claims", "--paper", "promobal", "--workdir", "d", "--lr-grid"]
  assert cli.parse_args(base)[0].grid_seeds is None  # suites.GRID_SEEDS
  assert cli.parse_args([*base, "--grid-seeds", "100, 7"])[0].grid_seeds == (
    100,
    7,
  )
  for bad in ("a,b", ","):
    with pytest.raises(SystemExit):
      cli.parse_args([*base, "--grid-seeds", bad])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("msjax claims: error: argument --grid-seeds:")


def test_paper_flag_takes_all_or_a_comma_list_of_the_suites_papers(capsys):
  def papers(text):
    argv = ["claims", "--paper", text, "--workdir", "d"]
    return cli.parse_args(argv)[0].paper

  assert papers("all") == tuple(suites.PAPERS)
  assert papers("promobal,protomm,promobal") == ("promobal", "protomm")
  for bad in ("nope", "protomm,nope", ","):
    with pytest.raises(SystemExit):
      papers(bad)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("msjax claims: error: argument --paper:")


def test_lr_grid_keeps_rows_of_runs_left_out_only_on_the_same_seeds(
  tmp_path, monkeypatch
):
  monkeypatch.setattr(suites, "LR_GRID", (1e-2,))
  # the merge does not depend on training: a stub run scores by its seed
  monkeypatch.setattr(
    runner,
    "run_one",
    lambda run, suite, seed_dir, with_random: {
      "scores": {"headline": run.config.seed / 100},
      "wall_s": 0.0,
    },
  )

  def rows(only, seeds):
    run_lr_grid(
      ("promobal",),
      str(tmp_path),
      budget="smoke",
      only=only,
      grid_seeds=seeds,
      log=lambda _: 0,
    )
    entry = json.loads((tmp_path / "lr_grid.json").read_text())["promobal"]
    return entry["seeds"], [row["name"] for row in entry["rows"]]

  rows(("supervised_sum",), (7,))
  # suite order, not call order; the earlier row is kept
  assert rows(("supervised_concat",), (7,)) == (
    [7],
    ["supervised_concat", "supervised_sum"],
  )
  # another seed set: the rows of seed 7 cannot be mixed in
  assert rows(("supervised_concat",), (8,)) == ([8], ["supervised_concat"])


def test_infomae_stage2_runs_read_sequences_of_pairs_in_runs():
  """Stage 2 trains its temporal term: sequences, pairs drawn as runs."""
  runs = suites.suite("infomae", "default", 0, "default").runs
  stage2 = [r for r in runs if r.name.startswith("infomae_")]
  assert [r.config.data.pair_ratio for r in stage2] == list(suites.RATIOS)
  for run in stage2:
    c = run.config
    assert c.loss.stage == 2 and c.data.subset == "mixed"
    assert c.train.sequence_length == c.loss.seq_len == c.data.block > 1
    assert c.train.batch_size // c.train.sequence_length >= 2
  for run in runs:
    if not run.name.startswith("infomae_"):
      assert run.config.train.sequence_length == 1


def test_infomae_stage2_projections_and_discriminator_rate():
  """Stage 2's U, V are as wide as the baselines' features; its
  discriminators keep their own rate, the rest trains at the run's."""
  suite = suites.suite("infomae", "skewed", 1, "default")
  runs = {r.name: r for r in suite.runs}
  tiny = infomae.default_config("tiny").model
  assert tiny.shared_dim == 8  # else the suite's 64 is no longer an override
  width = runs["clip_0.05"].config.model.feature_dim
  for ratio in suites.RATIOS:
    c = runs[f"infomae_{ratio}"].config
    assert c.model.shared_dim == c.model.private_dim == width == 64
    assert (
      c.optim.learning_rate
      == suites.LEARNING_RATES["infomae"][f"infomae_{ratio}"]
    )
    disc = c.optim.groups.discriminators.learning_rate
    assert disc == suites.INFOMAE_DISC_RATE != c.optim.learning_rate
  # stage 1 trains no projections: its model is the tiny default's there
  assert runs["stage1"].config.model.shared_dim == tiny.shared_dim


def test_promobal_suite_solves_pro_fd_with_specs_sinkhorn_rounds():
  """SPEC §3.4: 20 rounds (the method's tiny default has 5, for speed)."""
  tiny = promobal.default_config("tiny").loss.sinkhorn_iters
  assert tiny == 5  # else this test no longer checks an override
  for setting in ("default", "skewed"):
    runs = {
      r.name: r for r in suites.suite("promobal", setting, 0, "default").runs
    }
    assert runs["promobal"].config.loss.sinkhorn_iters == 20
    assert runs["promobal"].config.model.feature_dim == 64
