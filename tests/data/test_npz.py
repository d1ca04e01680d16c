import numpy as np
import pytest

from msjax.data import make_source, npz


def _write(path, n=24):
  rng = np.random.default_rng(0)
  subject = np.repeat([7, 8, 9, 10], n // 4)
  stamp = np.tile(np.arange(n // 4)[::-1] * 2.5, 4)  # out of order on disk
  npz.save_npz(
    path,
    {"ppg": rng.normal(size=(n, 1, 32)), "acc": rng.normal(size=(n, 3, 16))},
    label=np.arange(n) % 3,
    subject=subject,
    timestamp=stamp,
  )
  return subject, stamp


def test_subject_split_and_time_rank(tmp_path):
  path = str(tmp_path / "d.npz")
  subject, stamp = _write(path)
  c = npz.default_config(path, ("ppg", "acc"))
  train, test = make_source(c, "train"), make_source(c, "test")
  assert train.element_shapes() == {"ppg": (1, 32), "acc": (3, 16)}
  assert train.num_classes == test.num_classes == 3
  assert train.num_examples + test.num_examples == 24
  assert test.num_examples == 6  # one of four subjects held out
  tr, te = train.metadata(), test.metadata()
  assert not set(tr["session"].tolist()) & set(te["session"].tolist())
  # time_index ranks windows by timestamp within each subject.
  full = npz.default_config(path, ("ppg",))
  full.split_by, full.test_fraction = "example", 0.5
  for split in ("train", "test"):
    meta = make_source(full, split).metadata()
    got = meta["time_index"]
    assert got.min() >= 0 and got.max() <= 5
  rank = 5 - np.tile(np.arange(6), 4)  # timestamps were descending
  both = [make_source(full, s) for s in ("train", "test")]
  values = np.concatenate(
    [s.get(np.arange(s.num_examples))["signals"]["ppg"] for s in both]
  )
  times = np.concatenate([s.metadata()["time_index"] for s in both])
  with np.load(path) as data:
    for v, t in zip(values, times, strict=True):
      row = int(np.flatnonzero(np.all(np.isclose(data["ppg"], v), (1, 2)))[0])
      assert rank[row] == t


def test_file_split_and_errors(tmp_path):
  _write(str(tmp_path / "x_train.npz"))
  c = npz.default_config(str(tmp_path / "x_{split}.npz"), ("acc",))
  c.split_by = "file"
  assert make_source(c, "train").num_examples == 24
  with pytest.raises(FileNotFoundError, match="x_test.npz"):
    make_source(c, "test")
  c.split_by, c.path = "subject", str(tmp_path / "x_train.npz")
  c.modalities = ("eeg",)
  with pytest.raises(ValueError, match="eeg"):
    make_source(c, "train")


def test_nan_rejected(tmp_path):
  path = str(tmp_path / "bad.npz")
  x = np.zeros((4, 1, 8))
  x[2, 0, 3] = np.nan
  npz.save_npz(path, {"ppg": x}, subject=np.array([0, 0, 1, 1]))
  with pytest.raises(ValueError, match="NaN"):
    make_source(npz.default_config(path, ("ppg",)), "train")


def _labelled(path, label, **extra):
  npz.save_npz(
    path,
    {"ppg": np.zeros((4, 1, 8))},
    subject=np.repeat([0, 1], 2),
    **({"label": label} if label is not None else {}),
    **extra,
  )
  return npz.default_config(path, ("ppg",))


def test_label_checks(tmp_path):
  from msjax.train import runtime  # noqa: PLC0415

  path = str(tmp_path / "d.npz")
  source = make_source(_labelled(path, np.array([0.0, 1.0, 2.0, 1.0])), "train")
  assert source.labels().dtype.kind == "i"
  with pytest.raises(ValueError, match="are not whole numbers"):
    make_source(_labelled(path, np.array([0.5, 1.0, 2.0, 1.0])), "train")
  with pytest.raises(ValueError, match=r"are strings \('a', 'b', \.\.\.\)"):
    make_source(_labelled(path, np.array(["a", "b", "a", "b"])), "train")
  unlabelled = make_source(_labelled(path, None), "train")
  assert (unlabelled.labels() == -1).all()
  assert not runtime.has_labels(unlabelled)
  assert runtime.has_labels(source)


def test_object_arrays_and_non_zip_files(tmp_path):
  path = tmp_path / "obj.npz"
  np.savez(
    path,
    ppg=np.zeros((4, 1, 8)),
    label=np.array([0, "x", None, 1], dtype=object),
    subject=np.array([0, 0, 1, 1]),
  )
  with pytest.raises(ValueError, match="holds object arrays"):
    make_source(npz.default_config(str(path), ("ppg",)), "train")
  npy = tmp_path / "single.npz"
  with open(npy, "wb") as handle:
    np.save(handle, np.zeros((4, 1, 8)))
  with pytest.raises(ValueError, match=r"is not an \.npz archive"):
    make_source(npz.default_config(str(npy), ("ppg",)), "train")


def test_uncompressed_float32_modalities_are_memory_mapped(tmp_path):
  """A batch reads the file's rows at get time: the signals are not copied."""
  rng = np.random.default_rng(0)
  n = 40
  ppg = rng.normal(size=(n, 1, 16)).astype(np.float32)
  acc = rng.normal(size=(n, 3, 8)).astype(np.float64)  # not float32: read
  subject = np.repeat(np.arange(8), 5)
  path = tmp_path / "w.npz"
  npz.save_npz(str(path), {"ppg": ppg, "acc": acc}, subject=subject,
               label=subject % 3)  # fmt: skip
  config = npz.default_config(str(path), ("ppg", "acc"))
  config.test_subjects = (1, 6)
  test = npz.load_npz(config, "test")
  compressed = tmp_path / "c.npz"
  np.savez_compressed(compressed, ppg=ppg, acc=acc, subject=subject,
                      label=subject % 3)  # fmt: skip
  eager_config = npz.default_config(str(compressed), ("ppg", "acc"))
  eager_config.test_subjects = (1, 6)
  eager = npz.load_npz(eager_config, "test")
  rows = np.flatnonzero(np.isin(subject, (1, 6)))
  picks = np.array([3, 0, 9])
  for source in (test, eager):
    batch = source.get(picks)
    np.testing.assert_array_equal(batch["signals"]["ppg"], ppg[rows[picks]])
    np.testing.assert_allclose(batch["signals"]["acc"], acc[rows[picks]])
    np.testing.assert_array_equal(batch["session"], subject[rows[picks]])
  # Overwrite one stored row in place: only the mapped source sees it.
  on_disk = npz._mapped_member(str(path), "ppg")
  assert on_disk is not None and npz._mapped_member(str(path), "acc") is None
  assert npz._mapped_member(str(compressed), "ppg") is None
  writable = np.memmap(path, np.float32, "r+", offset=on_disk.offset,
                       shape=on_disk.shape)  # fmt: skip
  writable[rows[3]] = 7.0
  writable.flush()
  np.testing.assert_array_equal(test.get(np.array([3]))["signals"]["ppg"], 7.0)
  assert not np.any(eager.get(np.array([3]))["signals"]["ppg"] == 7.0)
