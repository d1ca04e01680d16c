import numpy as np
import pytest

from msjax.data import ArraySource, pipeline


def _source(n=24, sessions=3):
  per = n // sessions
  return ArraySource(
    {"a": np.arange(n, dtype=np.float32)[:, None, None].repeat(4, -1)},
    label=np.arange(n) % 3,
    session=np.repeat(np.arange(sessions), per),
    time_index=np.tile(np.arange(per), sessions),
  )


def test_epochs_cover_every_example_once_and_are_seeded():
  n, b = 24, 5
  steps = n // b
  seen = np.concatenate(
    [
      pipeline.global_batch_indices(n, batch_size=b, seed=3, step=s)
      for s in range(steps)
    ]
  )
  assert len(set(seen.tolist())) == steps * b
  again = pipeline.global_batch_indices(n, batch_size=b, seed=3, step=2)
  np.testing.assert_array_equal(again, seen[10:15])
  other = pipeline.global_batch_indices(n, batch_size=b, seed=4, step=2)
  assert not np.array_equal(other, again)
  next_epoch = pipeline.global_batch_indices(n, batch_size=b, seed=3, step=4)
  assert not np.array_equal(next_epoch, seen[:5])


def test_resuming_equals_uninterrupted():
  source = _source()
  full = [
    b["label"]
    for _, b in pipeline.iterate_batches(
      source,
      batch_size=4,
      seed=0,
      num_steps=9,
      process_index=0,
      process_count=1,
    )
  ]
  resumed = [
    b["label"]
    for _, b in pipeline.iterate_batches(
      source,
      batch_size=4,
      seed=0,
      start_step=6,
      num_steps=3,
      process_index=0,
      process_count=1,
    )
  ]
  for a, b in zip(full[6:], resumed, strict=True):
    np.testing.assert_array_equal(a, b)


def test_processes_get_disjoint_blocks_that_tile_the_global_batch():
  source = _source()
  global_batch = pipeline.batch_at(
    source, 3, batch_size=8, seed=1, process_index=0, process_count=1
  )
  parts = [
    pipeline.batch_at(
      source, 3, batch_size=8, seed=1, process_index=p, process_count=4
    )
    for p in range(4)
  ]
  np.testing.assert_array_equal(
    np.concatenate([p["signals"]["a"] for p in parts]),
    global_batch["signals"]["a"],
  )
  with pytest.raises(ValueError, match="divisible"):
    pipeline.process_slice(np.arange(6), process_index=0, process_count=4)


def test_sequence_sampler_consecutive_and_far_apart():
  n, sessions = 60, 2
  source = _source(n, sessions)
  meta = source.metadata()
  # Break session 1 at window 10: time indices 10.. shifted by 100.
  meta["time_index"][30 + 10 :] += 100
  index = pipeline.sequence_index(
    meta["session"], meta["time_index"], sequence_length=4
  )
  for step in range(5):
    idx = pipeline.sequence_batch_indices(
      index, num_sequences=3, seed=0, step=step, min_gap=8
    )
    assert idx.shape == (12,)
    seqs = idx.reshape(3, 4)
    starts = []
    for seq in seqs:
      assert len(set(meta["session"][seq].tolist())) == 1
      np.testing.assert_array_equal(np.diff(meta["time_index"][seq]), 1)
      starts.append((meta["session"][seq[0]], meta["time_index"][seq[0]]))
    for i in range(3):
      for j in range(i):
        if starts[i][0] == starts[j][0]:
          assert abs(int(starts[i][1]) - int(starts[j][1])) >= 8
    again = pipeline.sequence_batch_indices(
      index, num_sequences=3, seed=0, step=step, min_gap=8
    )
    np.testing.assert_array_equal(idx, again)
  with pytest.raises(ValueError, match="sequences"):
    pipeline.sequence_batch_indices(index, num_sequences=50, seed=0, step=0)


def test_batch_at_with_sequences_is_sequence_major():
  source = _source(30, 1)
  meta = source.metadata()
  index = pipeline.sequence_index(
    meta["session"], meta["time_index"], sequence_length=3
  )
  batch = pipeline.batch_at(
    source,
    0,
    batch_size=6,
    seed=2,
    sequences=index,
    process_index=0,
    process_count=1,
  )
  t = batch["time_index"].reshape(2, 3)
  np.testing.assert_array_equal(np.diff(t, axis=1), 1)
