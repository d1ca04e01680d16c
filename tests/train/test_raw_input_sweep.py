"""experiments/sweeps/raw_input.py: its table and its argument checks."""

import importlib.util
import pathlib

import pytest

PATH = (
  pathlib.Path(__file__).resolve().parents[2]
  / "experiments"
  / "sweeps"
  / "raw_input.py"
)


def _module():
  spec = importlib.util.spec_from_file_location("raw_input_sweep", PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_table_reports_mean_std_and_the_worst_seeds_margin():
  sweep = _module()
  rows = {
    "good": [
      {"trained": 0.8, "random": 0.6, "raw": 0.3, "wall_s": 1.0},
      {"trained": 0.6, "random": 0.5, "raw": 0.5, "wall_s": 1.0},
    ],
    "bad": [{"trained": 0.4, "random": 0.5, "raw": 0.45, "wall_s": 1.0}],
  }
  lines = sweep.table(rows).splitlines()
  assert lines[2] == (
    "| good | 0.700 ± 0.141 | 0.550 ± 0.071 | 0.400 ± 0.141 | +0.100 |"
    " +0.100 | yes |"
  )
  assert lines[3] == "| bad | 0.400 | 0.500 | 0.450 | -0.100 | -0.050 | NO |"


def test_every_run_names_an_experiment_and_unknown_methods_are_refused(
  tmp_path,
):
  sweep = _module()
  root = PATH.parents[2]
  for spec in sweep.RUNS.values():
    assert (root / spec.split(":")[0]).is_file(), spec
  with pytest.raises(SystemExit, match="unknown methods"):
    sweep.main(["--workdir", str(tmp_path), "--methods", "clip,nope"])
