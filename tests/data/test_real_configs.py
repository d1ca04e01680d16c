"""Paper configs on real-dataset builders: train + probe, or one-line error."""

import math

import numpy as np
import pytest
from test_pamap2 import _write_subject

from msjax.data import builders
from msjax.train import config_lib, loop
from msjax.train.errors import DataError

CONFIGS = [
  ("protomm_paper", "wesad"),
  ("protomm_paper", "pamap2"),
  ("protomm_paper", "realworld_har"),
  ("protomm_paper", "basic_motions"),
  ("promobal_paper", "mod_vehicle"),
  ("infomae_paper", None),  # MOD vehicle detection
]


def _load(name, dataset, tmp_path, manual):
  arg = "smoke=True" + (f",dataset={dataset}" if dataset else "")
  return config_lib.load_config(
    f"experiments/{name}.py:{arg}",
    [f"data.data_dir={tmp_path / 'tfds'}", f"data.manual_dir={manual}"],
  )


@pytest.mark.parametrize("name,dataset", CONFIGS)
def test_missing_data_is_one_line(name, dataset, tmp_path):
  config = _load(name, dataset, tmp_path, tmp_path / "empty")
  with pytest.raises(DataError) as info:
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  message = str(info.value)
  assert "\n" not in message
  assert "manual_dir" in message and str(tmp_path / "empty") in message


def test_num_classes_of_default_tasks():
  counts = {
    n: builders.num_classes(builders.CONFIGS[n]()) for n in builders.CONFIGS
  }
  assert counts == {
    "wesad": 3,
    "pamap2": 18,
    "realworld_har": 8,
    "basic_motions": 4,
    "mod_vehicle": 7,
  }


@pytest.mark.slow
def test_pamap2_train_and_probe_end_to_end(tmp_path):
  raw = tmp_path / "raw" / "Protocol"
  raw.mkdir(parents=True)
  for subject in (101, 102, 103, 104):
    _write_subject(raw / f"subject{subject}.dat", subject)
  config = _load("protomm_paper", "pamap2", tmp_path, tmp_path / "raw")
  with config.unlocked():
    config.data.window_s, config.data.hop_s = 1.0, 0.5
    config.data.val_subjects, config.data.test_subjects = (103,), (104,)
    # Keep it cheap: two steps, one probe, no random-encoder baseline.
    config.train.total_steps, config.train.log_every = 2, 1
    config.eval.random_baseline, config.eval.probe_steps = False, 10
  result = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert result["step"] == config.train.total_steps
  values = [v for v in _floats(result["eval"])]
  assert values and all(math.isfinite(v) for v in values)
  assert all(np.isfinite(v) for v in _floats(result["metrics"]))


def _floats(tree):
  if isinstance(tree, dict):
    for value in tree.values():
      yield from _floats(value)
  elif isinstance(tree, int | float | np.floating):
    yield float(tree)
