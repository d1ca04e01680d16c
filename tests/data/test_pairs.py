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
  config.subset = "mixed"
  config.pair_share = 0.75  # 8 pairs, 11 unpaired rows per modality: 4 copies
  mixed = make_source(config, "train")
  assert (mixed.num_pair_rows, mixed.num_unpaired) == (32, 11)
  config.subset = "unpaired"  # no pairs to repeat
  assert make_source(config, "train").num_examples == unpaired.num_examples


def _sessions_source(num_sessions=5, per_session=12, drop=()):
  """Windows whose signal is their id; ``drop``: ids removed (time gaps)."""
  ids = np.array(
    [i for i in range(num_sessions * per_session) if i not in set(drop)]
  )
  signal = ids.astype(np.float32)[:, None, None]
  return ArraySource(
    {"ppg": signal, "acc": signal + 1000},
    label=ids % 3,
    session=ids // per_session,
    time_index=ids % per_session,
  )


def _split_in_runs(base, **options):
  """``pair_ratio_split`` of ``base`` with its session and time columns."""
  columns = base.metadata()
  return pair_ratio_split(
    base.num_examples,
    modalities=MODS,
    session=columns["session"],
    time_index=columns["time_index"],
    **options,
  )


def _consecutive(ids, per_session=12):
  """Whether each row of ``ids [S, L]`` is one session's consecutive run."""
  return (ids // per_session == ids[:, :1] // per_session).all(1) & (
    np.diff(ids, axis=1) == 1
  ).all(1)


@pytest.mark.parametrize("unpaired", ["all", "disjoint"])
def test_split_in_runs_draws_whole_runs(unpaired):
  base = _sessions_source(drop=(30, 31))
  n = base.num_examples
  split = _split_in_runs(
    base, pair_ratio=0.2, seed=4, unpaired=unpaired, block=4
  )
  ids = base.get(split.paired)["signals"]["ppg"][:, 0, 0].astype(int)
  runs = ids.reshape(-1, 4)  # sorted ids: disjoint runs stay in order
  assert len(split.paired) == 4 * -(-round(0.2 * n) // 4)
  assert _consecutive(runs).all()
  assert split.block == 4
  pools = [split.unpaired[m] for m in MODS]
  if unpaired == "all":
    assert pools[0].tolist() == pools[1].tolist()
  everything = np.concatenate([split.paired, *pools])
  if unpaired == "disjoint":  # a cover: every window once
    assert sorted(everything.tolist()) == list(range(n))
  else:
    assert set(everything.tolist()) == set(range(n))
  with pytest.raises(ValueError, match="session and time_index"):
    pair_ratio_split(n, pair_ratio=0.2, modalities=MODS, seed=4, block=4)
  # Every window paired: all runs of 5, then the windows outside them.
  every = _split_in_runs(base, pair_ratio=1.0, seed=4, block=5)
  assert sorted(every.paired.tolist()) == list(range(n))


def _sequence_batches(source, steps, num_sequences=6, length=4):
  """``(ppg ids, acc ids, paired)``, each ``[S, L]``, of sequence batches."""
  from msjax.data.sequences import sequence_batch_indices, sequence_index_for

  index = sequence_index_for(source, length)
  shape = (num_sequences, length)
  for step in range(steps):
    rows = sequence_batch_indices(
      index, num_sequences=num_sequences, seed=0, step=step
    )
    batch = source.get(rows)
    ppg = batch["signals"]["ppg"][:, 0, 0].astype(int).reshape(shape)
    acc = batch["signals"]["acc"][:, 0, 0].astype(int).reshape(shape) - 1000
    yield ppg, acc, batch["paired"].reshape(shape)


def test_paired_source_runs_are_consecutive_in_every_modality():
  base = _sessions_source(num_sessions=8, drop=(30, 31, 77))
  split = _split_in_runs(base, pair_ratio=0.1, seed=1, unpaired="all", block=4)
  source = PairedSource(base, split)
  meta = source.metadata()
  num_pairs = len(split.paired)
  np.testing.assert_array_equal(meta["label"][num_pairs:], -1)
  pair_ids = base.get(split.paired)["signals"]["ppg"][:, 0, 0].astype(int)
  np.testing.assert_array_equal(meta["label"][:num_pairs], pair_ids % 3)
  paired_runs = unpaired_runs = 0
  for ppg, acc, paired in _sequence_batches(source, 20):
    assert (paired == paired[:, :1]).all()  # a run is paired or not
    assert _consecutive(ppg).all() and _consecutive(acc).all()
    np.testing.assert_array_equal(ppg[paired[:, 0]], acc[paired[:, 0]])
    # unpaired runs are not synchronized across modalities
    assert (ppg[~paired[:, 0], 0] != acc[~paired[:, 0], 0]).all()
    paired_runs += int(paired[:, 0].sum())
    unpaired_runs += int((~paired[:, 0]).sum())
  assert paired_runs > 0 and unpaired_runs > 0
  # every unpaired window of the pool is used, in chunks of 4
  assert source.num_unpaired % 4 == 0
  everything = source.get(np.arange(num_pairs, source.num_examples))
  pool = base.get(split.unpaired["ppg"])["signals"]["ppg"][:, 0, 0]
  used = everything["signals"]["ppg"][:, 0, 0]
  assert set(used.tolist()) <= set(pool.tolist())
  assert len(pool) - len(used) < 4 * len(MODS) * 2  # only chunk tails dropped


def test_record_roundtrip_keeps_block(tmp_path):
  base = _sessions_source()
  split = _split_in_runs(base, pair_ratio=0.2, seed=2, block=3)
  save_pair_split(str(tmp_path / "split.json"), split)
  loaded = load_pair_split(str(tmp_path / "split.json"))
  assert loaded.block == 3
  np.testing.assert_array_equal(loaded.paired, split.paired)


@pytest.mark.parametrize("share", [0.25, 0.5, 0.8])
def test_pair_share_repeats_the_pairs_to_that_fraction_of_rows(share):
  base = _sessions_source(num_sessions=8, drop=(30, 31, 77))
  split = _split_in_runs(base, pair_ratio=0.1, seed=1, unpaired="all", block=4)
  natural = PairedSource(base, split)
  source = PairedSource(base, split, pair_share=share)
  num_pairs = len(split.paired)
  k = source.num_pair_rows // num_pairs
  assert source.num_pair_rows == k * num_pairs
  assert source.num_unpaired == natural.num_unpaired
  # k solves k P / (k P + U) = share, rounded: the share is met to within
  # half a copy of the pairs.
  fraction = lambda j: j * num_pairs / (j * num_pairs + natural.num_unpaired)  # noqa: E731
  assert fraction(k - 0.5) <= share <= fraction(k + 0.5)
  everything = source.get(np.arange(source.num_examples))
  np.testing.assert_array_equal(
    everything["paired"], np.arange(source.num_examples) < k * num_pairs
  )
  # Each copy is the pairs in their order; the unpaired rows are unchanged.
  ppg = everything["signals"]["ppg"][:, 0, 0].astype(int)
  reference = natural.get(np.arange(natural.num_examples))
  want = reference["signals"]["ppg"][:, 0, 0].astype(int)
  np.testing.assert_array_equal(
    ppg, np.concatenate([np.tile(want[:num_pairs], k), want[num_pairs:]])
  )
  # Runs stay inside a copy: sequences are consecutive and synchronized.
  seen = 0
  for ids, acc, paired in _sequence_batches(source, 10):
    assert (paired == paired[:, :1]).all()
    assert _consecutive(ids).all()
    np.testing.assert_array_equal(ids[paired[:, 0]], acc[paired[:, 0]])
    seen += int(paired[:, 0].sum())
  assert abs(seen / 60 - fraction(k)) < 0.25


def test_pair_share_zero_is_the_natural_source_and_bad_values_fail():
  base = _sessions_source()
  split = _split_in_runs(base, pair_ratio=0.2, seed=2, block=3)
  zero = PairedSource(base, split, pair_share=0.0)
  assert zero.num_pair_rows == len(split.paired)
  for bad in (-0.1, 1.0):
    with pytest.raises(ValueError, match="pair_share"):
      PairedSource(base, split, pair_share=bad)
