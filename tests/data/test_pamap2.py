import sys

import numpy as np
import pytest

from msjax.data import MissingDataError, make_source
from msjax.data.builders import pamap2

RATE = 100
SUBJECTS = (101, 102, 103, 104)
# (activity id, rows) blocks per subject file.
BLOCKS = [(0, 130), (1, 420), (4, 275), (0, 60), (24, 330)]


def _write_subject(path, subject):
  ids = np.concatenate([np.full(n, a) for a, n in BLOCKS]).astype(float)
  rows = len(ids)
  data = np.zeros((rows, 54))
  data[:, 0] = np.arange(rows) / RATE
  data[:, 1] = ids
  data[:, 2] = np.nan  # heart rate mostly missing
  t = np.arange(rows)
  for c in range(3):
    data[:, 3 + 1 + c] = subject * 10_000 + t + 0.1 * c  # hand acc 16 g
    data[:, 3 + 7 + c] = -t - 0.1 * c  # hand gyro
    data[:, 3 + 10 + c] = 2 * t + c  # hand mag
  data[:, 37 + 1] = 5.0  # ankle acc, unused
  data[5, 3 + 10] = np.nan  # a dropout, interpolated
  np.savetxt(path, data, fmt="%.6f")


def _expected(window, hop):
  """(label index, start row) of every kept window, computed directly."""
  ids = np.concatenate([np.full(n, a) for a, n in BLOCKS])
  out = []
  for k, start in enumerate(range(0, len(ids) - window + 1, hop)):
    chunk = ids[start : start + window]
    if chunk.min() == chunk.max() and chunk[0] != 0:
      out.append((pamap2.ACTIVITY_IDS.index(chunk[0]), start, k))
  return out


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  root = tmp_path_factory.mktemp("pamap2")
  (root / "raw" / "Protocol").mkdir(parents=True)
  for s in SUBJECTS:
    _write_subject(root / "raw" / "Protocol" / f"subject{s}.dat", s)
  c = pamap2.default_config()
  c.data_dir = str(root / "tfds")
  c.manual_dir = str(root / "raw")
  c.window_s, c.hop_s = 1.0, 0.5
  c.val_subjects, c.test_subjects = (103,), (104,)
  return c


def test_windows_labels_and_splits(config):
  expected = _expected(100, 50)
  train = make_source(config, "train")
  assert "tensorflow" not in sys.modules
  assert train.num_examples == 2 * len(expected)
  assert train.num_classes == 18
  assert train.element_shapes() == {
    "hand_acc": (3, 100),
    "hand_gyro": (3, 100),
    "hand_mag": (3, 100),
  }
  for split, _subjects in (("val", (103,)), ("test", (104,))):
    assert make_source(config, split).num_examples == len(expected)
  batch = train.get(np.arange(train.num_examples))
  meta = train.metadata()
  by_key = {}
  for i in range(train.num_examples):
    by_key[(int(meta["session"][i]), int(meta["time_index"][i]))] = i
  for session, subject in enumerate((101, 102)):
    for label, start, k in expected:
      i = by_key[(session, k)]
      assert batch["label"][i] == label
      acc = batch["signals"]["hand_acc"][i]
      np.testing.assert_allclose(
        acc[0], subject * 10_000 + start + np.arange(100), rtol=1e-6
      )
      np.testing.assert_allclose(
        batch["signals"]["hand_gyro"][i][2],
        -start - np.arange(100) - 0.2,
        rtol=1e-5,
      )
  # The NaN at row 5 lies in no kept window (activity 0 there); all finite.
  assert np.all(np.isfinite(batch["signals"]["hand_mag"]))


def test_interval_fft_representation(config):
  c = config.copy_and_resolve_references()
  c.window_s, c.hop_s = 2.0, 2.0
  c.representation = "interval_fft"  # FOCAL: 0.4 s intervals, 50 % overlap
  source = make_source(c, "test")
  # [2C, F, N] = [real/imag x 3 channels, 40 bins, 9 intervals (50 % hop)].
  assert source.element_shapes()["hand_acc"] == (6, 40, 9)
  assert source.num_examples == len(_expected(200, 200))
  x = source.get(np.arange(1))["signals"]["hand_acc"][0]
  meta = source.metadata()
  start = 200 * int(meta["time_index"][0])
  raw = 104 * 10_000 + start + np.arange(40)
  spec = np.fft.fft(raw)
  np.testing.assert_allclose(x[0, :, 0], spec.real, rtol=1e-4, atol=1e-2)
  np.testing.assert_allclose(x[1, :, 0], spec.imag, rtol=1e-4, atol=1e-2)
  second = np.fft.fft(raw + 20 + 0.1)  # channel 1, interval 1 (hop 20)
  np.testing.assert_allclose(x[2, :, 1], second.real, rtol=1e-4, atol=1e-2)
  np.testing.assert_allclose(x[3, :, 1], second.imag, rtol=1e-4, atol=1e-2)


def test_missing_files_one_line(tmp_path):
  c = pamap2.default_config()
  c.data_dir = str(tmp_path / "tfds")
  c.manual_dir = str(tmp_path / "nothing")
  with pytest.raises(MissingDataError) as info:
    make_source(c, "train")
  message = str(info.value)
  assert "\n" not in message
  assert "Protocol/subject1NN.dat" in message and str(tmp_path) in message
  assert "UCI" in message
