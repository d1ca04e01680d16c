import io
import zipfile

import numpy as np
import pytest

from msjax.data import MissingDataError, make_source
from msjax.data.builders import realworld

BASE = 1_435_000_000_000  # ms
PREFIX = {
  "acc": "acc",
  "gyr": "Gyroscope",
  "mag": "MagneticField",
  "lig": "Light",
}
# (subject, activity, part) -> (start offset ms, duration ms)
SESSIONS = {
  (1, "walking", 1): (0, 6_000),
  (1, "sitting", 1): (500, 4_100),
  (2, "walking", 1): (0, 5_000),
  (2, "sitting", 1): (0, 3_000),
  (2, "sitting", 2): (0, 4_000),
  (3, "walking", 1): (100, 7_000),
  (4, "walking", 1): (0, 2_500),
}


def _csv(name, start, duration, seed):
  rng = np.random.default_rng(seed)
  t = np.sort(BASE + start + rng.uniform(0, duration, int(duration / 19)))
  t = np.r_[BASE + start, t, BASE + start + duration].astype(np.int64)
  seconds = (t - BASE) / 1000
  if name == "Light":
    rows = ["id,attr_time,attr_light"] + [
      f"{i},{a},{3 * s:.6f}"
      for i, (a, s) in enumerate(zip(t, seconds, strict=False))
    ]
  else:
    rows = ["id,attr_time,attr_x,attr_y,attr_z"] + [
      f"{i},{a},{s:.6f},{2 * s:.6f},{s + 7:.6f}"
      for i, (a, s) in enumerate(zip(t, seconds, strict=False))
    ]
  return "\n".join(rows) + "\n"


def _zip(files):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    for name, data in files.items():
      archive.writestr(name, data)
  return buffer.getvalue()


def _write(root):
  seed = 0
  for (subject, activity, part), (start, duration) in SESSIONS.items():
    if part != 1:
      continue
    folder = root / f"proband{subject}" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, name in PREFIX.items():
      seed += 1
      files = {}
      for position, shift in (("waist", 0), ("chest", 40)):
        files[f"{name}_{activity}_{position}.csv"] = _csv(
          name, start + shift, duration, seed
        )
      second = SESSIONS.get((subject, activity, 2))
      if second:  # a split recording, in a nested zip
        files[f"{prefix}_{activity}_2_csv.zip"] = _zip(
          {f"{name}_{activity}_2_waist.csv": _csv(name, *second, seed + 99)}
        )
      (folder / f"{prefix}_{activity}_csv.zip").write_bytes(_zip(files))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  root = tmp_path_factory.mktemp("rw")
  _write(root / "raw" / "realworld2016_dataset")
  c = realworld.default_config()
  c.data_dir, c.manual_dir = str(root / "tfds"), str(root / "raw")
  c.val_subjects, c.test_subjects = (3,), (2,)
  return c


def _count(start, duration):
  """Windows of 100 grid samples every 50 on the common 20 ms grid."""
  # Every stream spans exactly [start, start + duration] (end points pinned).
  grid = len(np.arange(0, duration, 20.0))
  return max(0, (grid - 100) // 50 + 1)


def test_sessions_windows_and_labels(config):
  test = make_source(config, "test")  # proband2: 3 sessions, 2 of them split
  assert test.element_shapes() == {
    "waist_acc": (3, 100),
    "waist_gyro": (3, 100),
    "waist_mag": (3, 100),
    "waist_light": (1, 100),
  }
  assert test.num_classes == 8
  expected = [_count(*SESSIONS[k]) for k in SESSIONS if k[0] == 2]
  assert test.num_examples == sum(expected) == 4 + 2 + 3
  batch = test.get(np.arange(test.num_examples))
  walking, sitting = (
    realworld.ACTIVITIES.index("walking"),
    realworld.ACTIVITIES.index("sitting"),
  )
  assert sorted(batch["label"].tolist()) == [sitting] * 5 + [walking] * 4
  assert len(set(batch["session"].tolist())) == 3
  # Values are linear in time, so interpolation is exact: x = t, y = 2 t.
  acc = batch["signals"]["waist_acc"]
  start = acc[:, 0, 0]
  np.testing.assert_allclose(acc[:, 1], 2 * acc[:, 0], atol=1e-4)
  np.testing.assert_allclose(acc[:, 2], acc[:, 0] + 7, atol=1e-4)
  np.testing.assert_allclose(
    acc[:, 0, :], start[:, None] + 0.02 * np.arange(100), atol=1e-4
  )
  np.testing.assert_allclose(
    batch["signals"]["waist_light"][:, 0, 0], 3 * start, atol=1e-3
  )
  # proband2's sessions start at t = 0 s; window k starts at k * hop = k s.
  np.testing.assert_allclose(start, batch["time_index"] * 1.0, atol=1e-4)


def test_splits_by_subject(config):
  train = make_source(config, "train")
  val = make_source(config, "val")
  subject_windows = {
    s: sum(_count(*v) for k, v in SESSIONS.items() if k[0] == s)
    for s in (1, 3, 4)
  }
  assert train.num_examples == subject_windows[1] + subject_windows[4]
  assert val.num_examples == subject_windows[3]


def test_missing(tmp_path):
  c = realworld.default_config()
  c.data_dir, c.manual_dir = str(tmp_path / "t"), str(tmp_path / "x")
  with pytest.raises(MissingDataError, match="proband.*Mannheim"):
    make_source(c, "val")
