"""A run killed by SIGKILL and restarted ends bitwise equal to an unbroken one.

The killed and the restarted run are ``python -m msjax.cli train`` processes
with the same command line; the reference runs in-process on the same
one-device mesh, so the compiled step is the same.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from msjax.train import config_lib
from msjax.train.checkpoint import Checkpointer
from msjax.train.loop import train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = f"{ROOT}/experiments/protomm.py:smoke"
OVERRIDES = [
  "train.mesh.data=1",  # one device: a quick compile, the same program
  "train.total_steps=12",
  "train.log_every=1",
  "checkpoint.every_steps=1",
  "checkpoint.keep=2",
  "checkpoint.async_save=false",
  "eval.at_end=false",
]


def _command(workdir):
  return [
    sys.executable,
    "-m",
    "msjax.cli",
    "train",
    "--config",
    SPEC,
    "--workdir",
    str(workdir),
    *(f"--config.{o}" for o in OVERRIDES),
  ]


def _state(workdir, config):
  checkpointer = Checkpointer(str(workdir), config.checkpoint, read_only=True)
  try:
    return checkpointer.latest_step(), checkpointer.restore_raw()
  finally:
    checkpointer.close()


def _finished_steps(workdir):
  directory = workdir / "checkpoints"
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_sigkill_and_restart_equals_uninterrupted(tmp_path):
  env = {
    **os.environ,
    # conftest's flags (8 devices, the suite's optimisation level): the
    # in-process reference must compile the same program.
    "XLA_FLAGS": os.environ["XLA_FLAGS"],
    "JAX_PLATFORMS": "cpu",
  }
  workdir = tmp_path / "killed"
  process = subprocess.Popen(
    _command(workdir),
    cwd=ROOT,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.monotonic() + 240
  while not [s for s in _finished_steps(workdir) if s >= 2]:
    assert process.poll() is None, process.stderr.read()[-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  process.stderr.close()
  killed_at = max(_finished_steps(workdir))
  assert 2 <= killed_at < 12, "the run finished before it could be killed"

  config = config_lib.load_config(SPEC, OVERRIDES)
  train_and_evaluate(config, str(tmp_path / "reference"))

  restarted = subprocess.run(
    _command(workdir), cwd=ROOT, env=env, capture_output=True, text=True
  )
  assert restarted.returncode == 0, restarted.stderr[-3000:]
  assert f"resuming at step {killed_at};" in restarted.stderr
  step, state = _state(workdir, config)
  reference_step, reference = _state(tmp_path / "reference", config)
  assert step == reference_step == 12
  assert jax.tree.structure(state) == jax.tree.structure(reference)
  for got, want in zip(
    jax.tree.leaves(state), jax.tree.leaves(reference), strict=True
  ):
    np.testing.assert_array_equal(got, want)
