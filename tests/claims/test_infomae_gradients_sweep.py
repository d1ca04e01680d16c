"""experiments/sweeps/infomae_gradients.py: its configs and its table."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep():
  path = ROOT / "experiments" / "sweeps" / "infomae_gradients.py"
  spec = importlib.util.spec_from_file_location("infomae_gradients", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_base_size_with_specs_or_the_suites_options(sweep):
  spec = sweep.config_for(
    "base", "spec", 60, ["--config.model.swin.empty_tokens=masked"]
  )
  assert tuple(spec.model.swin.depths) == (2, 2, 4)  # the base SWIN
  assert spec.model.swin.patch_norm and not spec.model.center_features
  assert spec.loss.rec_target == "input" and spec.loss.stage == 2
  assert spec.model.swin.empty_tokens == "masked"  # overrides last
  assert spec.train.total_steps == 60 and spec.train.log_every == 1
  assert spec.eval.protocol == "none"
  suite = sweep.config_for("base", "suite", 60, [])
  assert not suite.model.swin.patch_norm and suite.model.center_features
  assert suite.loss.rec_target == "pair_log_magnitude"
  assert suite.model.swin.empty_tokens == "masked"
  assert spec.model.swin.patch_norm  # SPEC's choices stay unmasked...
  unmasked = sweep.config_for("base", "spec", 60, [])
  assert unmasked.model.swin.empty_tokens == "visible"  # ...by default
  experiment = sweep.config_for("experiment", "suite", 5, [])
  assert experiment.model.swin.embed_dim == 64
  with pytest.raises(SystemExit, match="--options spec needs"):
    sweep.config_for("experiment", "spec", 5, [])


def test_table_shows_the_chosen_steps_and_an_infinite_norm(sweep, tmp_path):
  rows = [
    {"step": 1, "grad_norm": "inf", "loss/shared": 404.5, "loss/aug": 10.0},
    {"step": 2, "grad_norm": 4.7e12, "loss/shared": 2397.0},
    {"step": 3, "grad_norm": 1.0, "loss/shared": 1.0},
    {"step": 4, "eval": {}},
  ]
  (tmp_path / "metrics.jsonl").write_text(
    "\n".join(json.dumps(r) for r in rows) + "\n"
  )
  lines = sweep.table(str(tmp_path)).splitlines()
  assert lines[0].startswith("| step | grad_norm | loss/shared")
  assert lines[2] == "| 1 | inf | 404 | 10 | - | - |"
  assert lines[3] == "| 2 | 4.7e+12 | 2.4e+03 | - | - | - |"
  assert len(lines) == 4  # step 3 is not among the shown steps
