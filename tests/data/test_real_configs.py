"""Paper configs on real-dataset builders: train + probe, or one-line error."""

import math

import numpy as np
import pytest
import test_basic_motions
import test_mod
import test_realworld
import test_wesad
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


def _load(name, dataset, tmp_path, manual, overrides=()):
  arg = "smoke=True" + (f",dataset={dataset}" if dataset else "")
  return config_lib.load_config(
    f"experiments/{name}.py:{arg}",
    [
      f"data.data_dir={tmp_path / 'tfds'}",
      f"data.manual_dir={manual}",
      *overrides,
    ],
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


def _run_end_to_end(name, dataset, tmp_path, overrides=()):
  """Trains two steps of a paper config on fixture files, then probes.

  ``overrides`` are command-line style (``"data.window_s=2.0"``). Checks what
  every run must satisfy: the final step, finite train metrics, and a probe
  accuracy in [0, 1] for every embedding the method reports.
  """
  # Keep it cheap: two steps, one short probe, no random-encoder baseline,
  # one device (the data path is under test here; sharded steps are
  # tests/train's, and the suite's 8 simulated devices compile and run a
  # step ~15% slower on 2 cores).
  cheap = (
    "train.total_steps=2",
    "train.log_every=1",
    "eval.random_baseline=false",
    "eval.probe_steps=10",
    "train.mesh.data=1",
  )
  config = _load(
    name, dataset, tmp_path, tmp_path / "raw", (*cheap, *overrides)
  )
  result = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert result["step"] == config.train.total_steps
  assert all(np.isfinite(v) for v in _flat(result["metrics"]).values())
  evaluation = _flat(result["eval"])
  assert all(math.isfinite(v) for v in evaluation.values())
  accuracies = {k: v for k, v in evaluation.items() if k.endswith("accuracy")}
  assert accuracies, result["eval"]
  assert all(0.0 <= v <= 1.0 for v in accuracies.values()), accuracies


@pytest.mark.slow
def test_pamap2_train_and_probe_end_to_end(tmp_path):
  raw = tmp_path / "raw" / "Protocol"
  raw.mkdir(parents=True)
  for subject in (101, 102, 103, 104):
    _write_subject(raw / f"subject{subject}.dat", subject)
  _run_end_to_end(
    "protomm_paper",
    "pamap2",
    tmp_path,
    [
      "data.window_s=1.0",
      "data.hop_s=0.5",
      "data.val_subjects=(103,)",
      "data.test_subjects=(104,)",
    ],
  )


@pytest.mark.slow
def test_wesad_train_and_probe_end_to_end(tmp_path):
  for subject in test_wesad.SUBJECTS:
    test_wesad._write(tmp_path / "raw" / "WESAD", subject)
  _run_end_to_end(
    "protomm_paper",
    "wesad",
    tmp_path,
    [
      "data.window_s=2.0",
      "data.hop_s=1.0",
      "data.val_subjects=('S4',)",
      "data.test_subjects=('S5',)",
    ],
  )


@pytest.mark.slow
def test_realworld_train_and_probe_end_to_end(tmp_path):
  test_realworld._write(tmp_path / "raw" / "realworld2016_dataset")
  _run_end_to_end(
    "protomm_paper",
    "realworld_har",
    tmp_path,
    [
      "data.val_subjects=(3,)",
      "data.test_subjects=(2,)",
      "train.batch_size=8",  # the fixture has 9 training windows
      # Two of the four sensors keep the compile short; the 4-modality path
      # is the builder test's.
      "data.modalities=('waist_acc', 'waist_gyro')",
    ],
  )


@pytest.mark.slow
def test_basic_motions_train_and_probe_end_to_end(tmp_path):
  labels = ("Standing", "Running", "Walking", "Badminton")
  for split, seeds in (("TRAIN", range(16)), ("TEST", range(16, 24))):
    lines = test_basic_motions.HEADER
    for seed in seeds:
      lines += test_basic_motions._case(seed, labels[seed % 4])[1]
    (tmp_path / "raw").mkdir(exist_ok=True)
    (tmp_path / "raw" / f"BasicMotions_{split}.ts").write_text(lines)
  _run_end_to_end("protomm_paper", "basic_motions", tmp_path)


@pytest.mark.slow
def test_mod_infomae_train_and_probe_end_to_end(tmp_path):
  # Two runs of 20 s: 20 two-second windows, half of them for testing.
  runs = {"Polaris0150pm/rs1": (20.2, 20.1), "walk2/rs3": (20.3, 20.2)}
  test_mod._write(tmp_path / "raw", runs)
  _run_end_to_end(
    "infomae_paper",
    None,
    tmp_path,
    [
      f"data.runs={tuple(runs)}",
      "train.batch_size=8",
      "data.trim=false",
      "data.test_fraction=0.5",
      "loss.stage=1",
      "train.sequence_length=1",
      # One SWIN block: the MOD data path is under test, not depth.
      "model.swin.depths=(1,)",
    ],
  )


def _flat(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}/"))
    elif isinstance(value, int | float | np.floating):
      out[f"{prefix}{key}"] = float(value)
  return out
