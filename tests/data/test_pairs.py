import numpy as np
import pytest

from msjax.data import (
  ArraySource,
  PairedSource,
  load_pair_split,
  pair_ratio_split,
  save_pair_split,
)

MODS = ("ppg", "acc")


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 1.0])
def test_split_partitions_windows(ratio):
  n = 40
  split = pair_ratio_split(n, pair_ratio=ratio, modalities=MODS, seed=5)
  assert len(split.paired) == round(ratio * n)
  pools = [split.unpaired[m] for m in MODS]
  everything = np.concatenate([split.paired, *pools])
  assert sorted(everything.tolist()) == list(range(n))  # disjoint cover
  assert abs(len(pools[0]) - len(pools[1])) <= 1
  again = pair_ratio_split(n, pair_ratio=ratio, modalities=MODS, seed=5)
  np.testing.assert_array_equal(again.paired, split.paired)


def test_all_mode_and_seed_changes_choice():
  a = pair_ratio_split(
    50, pair_ratio=0.2, modalities=MODS, seed=0, unpaired="all"
  )
  rest = sorted(set(range(50)) - set(a.paired.tolist()))
  for m in MODS:
    assert a.unpaired[m].tolist() == rest
  b = pair_ratio_split(50, pair_ratio=0.2, modalities=MODS, seed=1)
  assert a.paired.tolist() != b.paired.tolist()


def test_record_roundtrip(tmp_path):
  split = pair_ratio_split(30, pair_ratio=0.3, modalities=MODS, seed=2)
  save_pair_split(str(tmp_path / "split.json"), split)
  loaded = load_pair_split(str(tmp_path / "split.json"))
  assert loaded.pair_ratio == 0.3 and loaded.num_examples == 30
  np.testing.assert_array_equal(loaded.paired, split.paired)
  for m in MODS:
    np.testing.assert_array_equal(loaded.unpaired[m], split.unpaired[m])


def test_paired_source_rows():
  n = 20
  ids = np.arange(n, dtype=np.float32)
  base = ArraySource(
    {m: ids[:, None, None] + 1000 * k for k, m in enumerate(MODS)},
    label=np.arange(n) % 2,
  )
  split = pair_ratio_split(n, pair_ratio=0.25, modalities=MODS, seed=0)
  source = PairedSource(base, split)
  assert source.num_examples == 5 + 8
  batch = source.get(np.arange(source.num_examples))
  ppg = batch["signals"]["ppg"][:, 0, 0]
  acc = batch["signals"]["acc"][:, 0, 0] - 1000
  np.testing.assert_array_equal(batch["paired"], np.arange(13) < 5)
  np.testing.assert_array_equal(ppg[:5], split.paired)
  np.testing.assert_array_equal(acc[:5], split.paired)  # synchronized
  assert sorted(ppg[5:].tolist()) == split.unpaired["ppg"].tolist()
  # 15 unpaired windows dealt 8 / 7: the shorter pool wraps around once.
  assert len(split.unpaired["acc"]) == 7
  assert set(acc[5:].tolist()) == set(split.unpaired["acc"].tolist())
  assert np.all(batch["label"][5:] == -1)
  np.testing.assert_array_equal(batch["label"][:5], split.paired % 2)


def test_pairing_config_through_make_source(tmp_path):
  from msjax.data import make_source, npz, pairing_config

  n = 40
  ids = np.arange(n, dtype=np.float32)[:, None, None]
  path = str(tmp_path / "d.npz")
  npz.save_npz(
    path,
    {"ppg": ids, "acc": ids + 1000},
    subject=np.arange(n) % 4,
    label=np.arange(n) % 2,
  )
  base = npz.default_config(path, MODS)
  record = str(tmp_path / "split.json")
  config = pairing_config(
    base, pair_ratio=0.25, subset="paired", record_path=record, split_seed=3
  )
  paired = make_source(config, "train")
  full = make_source(base, "train")
  assert paired.num_examples == round(0.25 * full.num_examples) == 8
  batch = paired.get(np.arange(8))
  np.testing.assert_array_equal(
    batch["signals"]["ppg"], batch["signals"]["acc"] - 1000
  )
  saved = load_pair_split(record)  # recorded on first use
  assert saved.num_examples == full.num_examples and len(saved.paired) == 8
  config.subset = "unpaired"
  unpaired = make_source(config, "train")  # reuses the record
  rows = unpaired.get(np.arange(unpaired.num_examples))
  assert not rows["paired"].any()
  used = set(rows["signals"]["ppg"][:, 0, 0].tolist())
  assert used == set(
    full.get(saved.unpaired["ppg"])["signals"]["ppg"][:, 0, 0].tolist()
  )
  assert make_source(config, "test").num_examples == n - full.num_examples
