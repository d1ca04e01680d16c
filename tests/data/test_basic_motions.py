import os

import numpy as np
import pytest

from msjax.data import MissingDataError, make_source
from msjax.data.builders import basic_motions

HEADER = """# a comment
@problemName BasicMotions
@timeStamps false
@univariate false
@dimensions 6
@equalLength true
@seriesLength 100
@classLabel true Standing Running Walking Badminton
@data
"""


def _case(seed, label):
  values = np.random.default_rng(seed).normal(size=(6, 100)).round(4)
  text = ":".join(",".join(f"{v:.4f}" for v in dim) for dim in values)
  return values, f"{text}:{label}\n"


def test_fixture_ts_files(tmp_path):
  cases = {
    "TRAIN": [(0, "Walking"), (1, "Standing"), (2, "Badminton")],
    "TEST": [(3, "Running")],
  }
  expected = {}
  for split, rows in cases.items():
    lines = HEADER
    for seed, label in rows:
      values, line = _case(seed, label)
      expected[seed] = values
      lines += line
    (tmp_path / f"BasicMotions_{split}.ts").write_text(lines)
  c = basic_motions.default_config()
  c.data_dir, c.manual_dir = str(tmp_path / "tfds"), str(tmp_path)
  train = make_source(c, "train")
  assert train.num_examples == 3 and train.num_classes == 4
  batch = train.get(np.arange(3))
  order = np.argsort(batch["session"])
  assert batch["label"][order].tolist() == [2, 0, 3]
  for row, seed in zip(order, (0, 1, 2), strict=True):
    np.testing.assert_allclose(
      batch["signals"]["acc"][row], expected[seed][:3], atol=1e-6
    )
    np.testing.assert_allclose(
      batch["signals"]["gyro"][row], expected[seed][3:], atol=1e-6
    )
  test = make_source(c, "test")
  assert test.get(np.arange(1))["label"].tolist() == [1]


def test_missing_files(tmp_path):
  c = basic_motions.default_config()
  c.data_dir, c.manual_dir = str(tmp_path / "t"), str(tmp_path)
  with pytest.raises(MissingDataError, match="BasicMotions_TRAIN.ts.*aeon"):
    make_source(c, "train")


def test_from_aeon_copy(tmp_path):
  pytest.importorskip("aeon")  # the issue's own condition: aeon installed
  folder = basic_motions.aeon_data_dir()
  c = basic_motions.default_config()  # manual_dir "" = aeon's copy
  c.data_dir = str(tmp_path / "tfds")
  train, test = make_source(c, "train"), make_source(c, "test")
  assert train.num_examples + test.num_examples == 80
  assert train.num_classes == 4
  for source in (train, test):
    labels = source.get(np.arange(source.num_examples))["label"]
    assert np.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
  # Cross-check one case against the file, parsed independently here.
  with open(os.path.join(folder, "BasicMotions_TRAIN.ts")) as f:
    lines = [x for x in f if x.strip() and not x.startswith(("#", "@"))]
  first = lines[0].strip().split(":")
  acc_x = np.asarray(first[0].split(","), float)
  batch = train.get(np.arange(train.num_examples))
  row = int(np.argmin(batch["session"]))
  np.testing.assert_allclose(batch["signals"]["acc"][row, 0], acc_x, rtol=1e-6)
  assert batch["label"][row] == [
    "Standing",
    "Running",
    "Walking",
    "Badminton",
  ].index(first[-1])
