import pickle

import numpy as np
import pytest

from msjax.data import MissingDataError, make_source
from msjax.data.builders import wesad

SUBJECTS = ("S2", "S3", "S4", "S5")
# (raw label, seconds) runs.
RUNS = [(0, 3.0), (1, 9.0), (2, 7.5), (0, 2.0), (3, 6.0), (4, 4.0), (6, 1.5)]
SECONDS = sum(s for _, s in RUNS)


def _write(root, subject):
  label = np.concatenate(
    [np.full(int(s * 700), lab) for lab, s in RUNS]
  ).astype(np.int32)
  number = int(subject[1:])
  bvp = number * 100_000 + np.arange(int(SECONDS * 64), dtype=float)
  acc = np.stack(
    [np.arange(int(SECONDS * 32), dtype=float) + c for c in range(3)], axis=1
  )
  ecg = np.arange(len(label), dtype=float)[:, None]
  record = {
    "subject": subject,
    "label": label,
    "signal": {
      "wrist": {
        "BVP": bvp[:, None],
        "ACC": acc,
        "EDA": np.zeros((int(SECONDS * 4), 1)),
        "TEMP": np.zeros((int(SECONDS * 4), 1)),
      },
      "chest": {"ECG": ecg, "ACC": np.zeros((len(label), 3))},
    },
  }
  (root / subject).mkdir(parents=True)
  with open(root / subject / f"{subject}.pkl", "wb") as f:
    pickle.dump(record, f)


def _expected(window, hop, keep):
  """(class, start second) of each run-aligned window, computed directly."""
  out, t = [], 0.0
  for lab, secs in RUNS:
    if lab in keep:
      n = int((secs - window) // hop) + 1
      out += [(keep[lab], t + k * hop) for k in range(max(n, 0))]
    t += secs
  return out


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  root = tmp_path_factory.mktemp("wesad")
  for s in SUBJECTS:
    _write(root / "raw" / "WESAD", s)
  c = wesad.default_config()
  c.data_dir, c.manual_dir = str(root / "tfds"), str(root / "raw")
  c.window_s, c.hop_s = 2.0, 2.0
  c.val_subjects, c.test_subjects = ("S4",), ("S5",)
  return c


def test_run_aligned_windows_three_classes(config):
  expected = _expected(2.0, 2.0, {1: 0, 2: 1, 3: 2})
  assert len(expected) == 4 + 3 + 3
  source = make_source(config, "test")
  assert source.num_classes == 3
  assert source.element_shapes() == {
    "wrist_bvp": (1, 128),
    "wrist_acc": (3, 64),
  }
  assert source.num_examples == len(expected)
  batch = source.get(np.arange(source.num_examples))
  starts = (batch["signals"]["wrist_bvp"][:, 0, 0] - 500_000) / 64
  got = sorted(zip(batch["label"].tolist(), starts.tolist(), strict=False))
  assert got == sorted(expected)
  acc_start = batch["signals"]["wrist_acc"][:, 1, 0] - 1
  np.testing.assert_allclose(acc_start / 32, starts)
  assert make_source(config, "train").num_examples == 2 * len(expected)
  # Consecutive windows of a run have consecutive time indices; runs don't.
  meta = source.metadata()
  order = np.argsort(meta["time_index"])
  t = meta["time_index"][order]
  s = starts[order]
  assert np.all((np.diff(t) == 1) == np.isclose(np.diff(s), 2.0))


def test_binary_task_resampling_and_chest(config):
  c = config.copy_and_resolve_references()
  c.task, c.resample_hz, c.align = "binary", 50.0, "grid"
  c.chest_signals = ("ECG",)
  c.modalities = ("wrist_bvp", "chest_ecg")
  source = make_source(c, "val")
  assert source.num_classes == 2
  assert source.element_shapes() == {
    "wrist_bvp": (1, 100),
    "chest_ecg": (1, 100),
  }
  # Grid windows of 2 s from t = 0 lying inside one kept run.
  keep = {1: 0, 2: 1, 3: 0}
  expected, _t = [], 0.0
  bounds = np.cumsum([0] + [s for _, s in RUNS])
  for k in range(int(SECONDS // 2)):
    lo, hi = 2 * k, 2 * k + 2
    for (lab, _), a, b in zip(RUNS, bounds[:-1], bounds[1:], strict=True):
      if a <= lo and hi <= b and lab in keep:
        expected.append(keep[lab])
  labels = source.get(np.arange(source.num_examples))["label"]
  assert sorted(labels.tolist()) == sorted(expected)


def test_missing_subjects(tmp_path):
  c = wesad.default_config()
  c.data_dir, c.manual_dir = str(tmp_path / "t"), str(tmp_path)
  with pytest.raises(MissingDataError, match="WESAD/SX/SX.pkl.*Siegen"):
    make_source(c, "train")
