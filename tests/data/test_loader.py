import os
import pickle
import threading
import time

import numpy as np
import pytest

from msjax.data import ArraySource, loader, pipeline, sequences
from msjax.data.prepare_lock import LOCK_NAME, prepare_once
from msjax.data.records import RecordSource
from tests.data import rss_worker

N, B, SEED = 40, 8, 3


def _source():
  rng = np.random.default_rng(0)
  return ArraySource(
    {"a": rng.normal(size=(N, 2, 3)), "b": rng.normal(size=(N, 1, 5))},
    label=rng.integers(0, 3, N),
    session=np.arange(N) // 10,
    time_index=np.arange(N) % 10,
  )


def _expected(source, step, process_index=0, process_count=1):
  """Uniform sampler written out: epoch permutations of default_rng."""
  per_epoch = N // B
  epoch, position = divmod(step, per_epoch)
  order = np.random.default_rng([SEED, epoch]).permutation(N)
  rows = order[position * B : (position + 1) * B]
  per = B // process_count
  return source.get(rows[process_index * per : (process_index + 1) * per])


def _assert_batches_equal(got, want):
  assert got.keys() == want.keys()
  for m in want["signals"]:
    np.testing.assert_array_equal(got["signals"][m], want["signals"][m])
  for key in want:
    if key != "signals":
      np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("num_workers,prefetch", [(0, 0), (0, 3)], ids=str)
def test_batches_are_the_steps_whatever_the_workers(num_workers, prefetch):
  source = _source()
  steps = 2 * N // B + 2  # crosses two epoch boundaries
  got = list(
    pipeline.iterate_batches(
      source,
      batch_size=B,
      seed=SEED,
      num_steps=steps,
      num_workers=num_workers,
      prefetch=prefetch,
      process_index=0,
      process_count=1,
    )
  )
  assert [step for step, _ in got] == list(range(steps))
  for step, batch in got:
    _assert_batches_equal(batch, _expected(source, step))


def test_resuming_at_a_step_continues_the_same_stream():
  source = _source()
  kwargs = dict(batch_size=B, seed=SEED, process_index=0, process_count=1)
  full = list(pipeline.iterate_batches(source, num_steps=9, **kwargs))
  rest = list(
    pipeline.iterate_batches(source, start_step=6, num_steps=3, **kwargs)
  )
  for (step, batch), (want_step, want) in zip(rest, full[6:], strict=True):
    assert step == want_step
    _assert_batches_equal(batch, want)


def test_processes_read_disjoint_blocks_of_the_global_batch():
  source = _source()
  for step in (0, 7):
    blocks = [
      pipeline.batch_at(
        source, step, batch_size=B, seed=SEED, process_index=p, process_count=4
      )
      for p in range(4)
    ]
    for p, block in enumerate(blocks):
      assert len(block["label"]) == B // 4
      _assert_batches_equal(block, _expected(source, step, p, 4))


def test_sequence_batches_are_consecutive_windows_whatever_the_workers():
  source = _source()
  index = sequences.sequence_index_for(source, 3)
  meta = source.metadata()
  sampler = loader.StepIndices(
    N, batch_size=6, seed=SEED, sequences=index, min_gap=3
  )
  dataset = loader.batch_dataset(source, sampler, num_steps=4)
  threads = list(loader.iterate(dataset, num_workers=0, prefetch=2))
  direct = [dataset[s] for s in range(4)]
  for (step, batch), (_, want) in zip(threads, direct, strict=True):
    _assert_batches_equal(batch, want)
    rows = sampler(step).reshape(2, 3)
    for run in rows:
      assert len(set(meta["session"][run])) == 1
      np.testing.assert_array_equal(np.diff(meta["time_index"][run]), 1)


def test_record_source_pickles_and_reads_the_same_through_workers(tmp_path):
  # Also the worker-process case of the test above (a spawn costs seconds).
  rss_worker.prepare(str(tmp_path), 64)
  source = RecordSource(rss_worker.builder(str(tmp_path), 64), "train", ("a",))
  copy = pickle.loads(pickle.dumps(source))
  _assert_batches_equal(copy.get([5, 1]), source.get([5, 1]))
  batch = source.get(np.arange(64))
  assert batch["signals"]["a"].shape == (64, *rss_worker.SHAPE)
  # Record i (time_index i) is the constant i % 7 plus a ramp, label i % 3.
  ramp = np.linspace(-1, 1, np.prod(rss_worker.SHAPE), dtype=np.float32)
  flat = batch["signals"]["a"].reshape(64, -1) - ramp
  i = batch["time_index"]
  assert sorted(i) == list(range(64))
  np.testing.assert_allclose(flat, (i % 7)[:, None] + 0 * flat, atol=1e-6)
  np.testing.assert_array_equal(batch["label"], i % 3)
  # metadata() parses the protos itself: the same columns as decoding.
  meta = source.metadata()
  for key in ("label", "session", "time_index"):
    np.testing.assert_array_equal(meta[key], batch[key])
  kwargs = dict(batch_size=16, seed=1, num_steps=6, process_index=1)
  kwargs.update(process_count=2)
  one = list(pipeline.iterate_batches(source, num_workers=0, **kwargs))
  two = list(pipeline.iterate_batches(source, num_workers=2, **kwargs))
  for (s1, b1), (s2, b2) in zip(one, two, strict=True):
    assert s1 == s2
    _assert_batches_equal(b1, b2)
  subset = source.subset(np.array([3, 9, 4]))
  _assert_batches_equal(subset.get([2, 0]), source.get([4, 3]))
  np.testing.assert_array_equal(subset.labels(), source.labels()[[3, 9, 4]])


def test_one_process_prepares_while_the_others_wait(tmp_path):
  calls = []
  done = threading.Event()

  def prepare():
    calls.append(threading.get_ident())
    time.sleep(0.3)
    done.set()

  workers = [
    threading.Thread(
      target=prepare_once,
      args=(str(tmp_path), done.is_set, prepare),
      kwargs=dict(poll_s=0.02),
    )
    for _ in range(4)
  ]
  for w in workers:
    w.start()
  for w in workers:
    w.join()
  assert len(calls) == 1 and done.is_set()
  assert not (tmp_path / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over(tmp_path):
  lock = tmp_path / LOCK_NAME
  lock.write_text("{}")
  old = time.time() - 100
  os.utime(lock, (old, old))
  calls = []
  prepare_once(
    str(tmp_path),
    lambda: bool(calls),
    lambda: calls.append(1),
    poll_s=0.01,
    stale_s=50,
  )
  assert calls == [1] and not lock.exists()
