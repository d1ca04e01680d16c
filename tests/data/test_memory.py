"""Training through an array_record dataset larger than the memory it may use.

The dataset (3200 records of 128 KiB: 400 MiB of float32 once decoded) is
four times the budget the test gives the run: 96 MiB of resident memory on top
of a process that has already run the same training on a small dataset
(everything loaded, compiled, initialised). A run's own growth (new
executables, checkpoint, TensorBoard) is ~60 MiB whatever the dataset size;
loading the dataset whole (as sources did before grain) would exceed the
budget four times over. The child
trains the toy method for one epoch through grain with read-ahead threads;
glibc's mmap threshold is fixed so that freed batch buffers go back to the
system (its adaptive threshold otherwise keeps up to ~30 MiB of freed
buffers, whatever the dataset size).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.data import rss_worker

pytestmark = pytest.mark.slow

NUM_RECORDS = 3200
BUDGET = 96 * 2**20


def test_training_reads_a_dataset_four_times_its_memory_budget(tmp_path):
  rss_worker.prepare(str(tmp_path / "warm"), rss_worker.WARM)
  rss_worker.prepare(str(tmp_path / "data"), NUM_RECORDS)
  decoded = NUM_RECORDS * rss_worker.RECORD_BYTES
  assert decoded >= 4 * BUDGET
  # One device, XLA's default optimisation, every executable cached: the
  # epoch run then loads the warm-up's executables instead of compiling
  # (each compilation keeps its code resident, ~100 MiB at the suite's
  # optimisation level 0, which this test is not about).
  env = dict(
    os.environ,
    MALLOC_MMAP_THRESHOLD_="65536",
    XLA_FLAGS="",
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "tests.data.rss_worker",
      str(tmp_path / "warm"),
      str(tmp_path / "data"),
      str(tmp_path / "run"),
      "0",
      str(NUM_RECORDS),
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=240,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  # It trained through every record (but the last partial batch) once.
  assert report["steps"] == NUM_RECORDS // rss_worker.BATCH
  assert report["records"] == report["steps"] * rss_worker.BATCH
  assert report["rss_peak"] - report["rss_start"] < BUDGET, report
