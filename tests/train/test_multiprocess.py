"""Two processes x two CPU devices (gloo) == one process x four devices."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

from msjax.train import config_lib
from msjax.train.checkpoint import Checkpointer
from msjax.train.loop import train_and_evaluate
from tests.train import toy

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


def _params(workdir, config):
  checkpointer = Checkpointer(str(workdir), config.checkpoint, read_only=True)
  try:
    assert checkpointer.latest_step() == 3
    return checkpointer.restore_raw()["params"]
  finally:
    checkpointer.close()


def test_two_processes_match_one_process_four_devices(tmp_path):
  port = _free_port()
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  workers = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "tests.train.multiprocess_worker",
        str(port),
        str(i),
        str(tmp_path / "two"),
      ],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  config = toy.get_config()
  config_lib.apply_overrides(
    config,
    [
      "train.mesh.data=4",
      "train.total_steps=3",
      "checkpoint.every_steps=3",
      "eval.at_end=false",
    ],
  )
  train_and_evaluate(
    config, str(tmp_path / "one"), method=toy, make_source=toy.make_source
  )
  outputs = [w.communicate(timeout=240)[0] for w in workers]
  for worker, output in zip(workers, outputs, strict=True):
    assert worker.returncode == 0, output[-3000:]
  assert "process 0 done" in outputs[0] and "process 1 done" in outputs[1]
  expected = _params(tmp_path / "one", config)
  got = _params(tmp_path / "two", config)
  # Same math, different all-reduce order across processes: float32 rounding.
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.array_equal(
    expected["prototypes"],
    toy.init(
      jax.random.fold_in(jax.random.key(0), 2**31 - 1),
      config,
      toy.make_source(config.data, "train").get(np.arange(16)),
    )["params"]["prototypes"],
  )
