"""Two processes x two CPU devices (gloo) == one process x four devices.

The two processes are launched with explicit coordinator, count and id, and
again with only a SLURM-style environment (``train.distributed.enabled=true``
and nothing else): the auto-detected launch gets distinct ids and trains
bitwise the same. A workdir the processes do not share, and two processes
claiming one id, are refused with one line.
"""

import os
import pathlib
import random
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from msjax.train import config_lib
from msjax.train.checkpoint import Checkpointer
from msjax.train.loop import train_and_evaluate
from tests.train import toy

ROOT = pathlib.Path(__file__).resolve().parents[2]
# JAX's SlurmCluster puts the coordinator on the first node of
# SLURM_STEP_NODELIST at port 61440 + SLURM_JOB_ID % 4096.
SLURM_PORT_BASE = 65535 - 2**12 + 1


def _free_port(low: int = 0, high: int = 0) -> int:
  for _ in range(200):
    port = random.randint(low, high) if low else 0
    with socket.socket() as sock:
      try:
        sock.bind(("localhost", port))
      except OSError:
        continue
      return sock.getsockname()[1]
  raise RuntimeError("no free port")


def _clean_env() -> dict[str, str]:
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "PMI_"))
  }
  return {**env, "PYTHONPATH": str(ROOT)}


def _slurm_env(job_id: int, proc_id: int) -> dict[str, str]:
  return {
    **_clean_env(),
    "SLURM_JOB_ID": str(job_id),
    "SLURM_STEP_ID": "0",
    "SLURM_JOB_NODELIST": "localhost",
    "SLURM_STEP_NODELIST": "localhost",
    "SLURM_NNODES": "1",
    "SLURM_STEP_NUM_NODES": "1",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": str(proc_id),
    "SLURM_LOCALID": str(proc_id),
    "SLURM_NODEID": "0",
  }


def _launch(args, env):
  return subprocess.Popen(
    [sys.executable, "-m", "tests.train.multiprocess_worker", *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _finish(workers, timeout=240):
  outputs = []
  for worker in workers:
    try:
      outputs.append(worker.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
      worker.kill()
      outputs.append(worker.communicate()[0] + "\n<killed: timeout>")
  return outputs


# JAX's CPU client waits 2 min for every process's device topology. On a
# loaded 2-core CI machine a launch once lost that race (process 0 timed out
# waiting for process 1): such a launch is retried once, from scratch.
_TOPOLOGY_TIMEOUT = "GetKeyValue() timed out"


def _run_pair(launch, timeout=240):
  """Runs ``launch()``'s two workers; once more on JAX's topology timeout.

  Args:
    launch: starts a fresh pair of workers (new port or job id, new
      workdir) and returns ``(workers, workdir)``.
    timeout: seconds to wait for each worker.

  Returns:
    ``(workers, outputs, workdir)`` of the last attempt.
  """
  workers, workdir = launch()
  outputs = _finish(workers, timeout)
  if any(w.returncode != 0 for w in workers) and any(
    _TOPOLOGY_TIMEOUT in output for output in outputs
  ):
    workers, workdir = launch()
    outputs = _finish(workers, timeout)
  return workers, outputs, workdir


def _both(outputs) -> str:
  return "\n".join(
    f"--- process {i} ---\n{out[-2500:]}" for i, out in enumerate(outputs)
  )


def _slurm_job_id() -> int:
  port = _free_port(SLURM_PORT_BASE, 65535)
  return port - SLURM_PORT_BASE + 4096 * random.randint(1, 99)


def _params(workdir, config):
  checkpointer = Checkpointer(str(workdir), config.checkpoint, read_only=True)
  try:
    assert checkpointer.latest_step() == 3
    return checkpointer.restore_raw()["params"]
  finally:
    checkpointer.close()


def _config():
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
  return config


@pytest.fixture(scope="module")
def explicit_launch(tmp_path_factory):

  def launch():
    workdir = tmp_path_factory.mktemp("explicit")
    port = _free_port()
    return [
      _launch(["explicit", str(port), str(i), str(workdir)], _clean_env())
      for i in range(2)
    ], workdir

  workers, outputs, workdir = _run_pair(launch)
  assert all(w.returncode == 0 for w in workers), _both(outputs)
  assert "process 0 done" in outputs[0] and "process 1 done" in outputs[1]
  return _params(workdir, _config())


def test_two_processes_match_one_process_four_devices(
  tmp_path, explicit_launch
):
  config = _config()
  train_and_evaluate(
    config,
    str(tmp_path / "one"),
    method=toy.METHOD,
    make_source=toy.make_source,
  )
  expected = _params(tmp_path / "one", config)
  got = explicit_launch
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


def test_slurm_environment_alone_matches_the_explicit_launch(
  tmp_path, explicit_launch
):
  attempts = iter(("a", "b"))

  def launch():
    job, workdir = _slurm_job_id(), tmp_path / next(attempts)
    return [
      _launch(["auto", str(workdir)], _slurm_env(job, i)) for i in range(2)
    ], workdir

  workers, outputs, workdir = _run_pair(launch)
  assert all(w.returncode == 0 for w in workers), _both(outputs)
  # Distinct ids from SLURM_PROCID (each worker prints its process index).
  assert "process 0 done" in outputs[0] and "process 1 done" in outputs[1]
  got = _params(workdir, _config())
  for a, b in zip(
    jax.tree.leaves(got), jax.tree.leaves(explicit_launch), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  assert not (workdir / ".msjax_launch").exists()  # claims cleaned up


def _error_lines(output):
  return [line for line in output.splitlines() if line.startswith("msjax:")]


def test_workdir_not_shared_is_refused_by_every_process(tmp_path):
  attempts = iter(("a", "b"))

  def launch():
    job, root = _slurm_job_id(), tmp_path / next(attempts)
    return [
      _launch(["auto", str(root / f"host{i}")], _slurm_env(job, i))
      for i in range(2)
    ], root

  workers, outputs, root = _run_pair(launch)
  for i, (worker, output) in enumerate(zip(workers, outputs, strict=True)):
    assert worker.returncode == 2, _both(outputs)
    (line,) = _error_lines(output)
    assert line.startswith(
      f"msjax: error: --workdir {root / f'host{i}'} is not shared by the"
      " 2 processes"
    ), line
    assert "Traceback" not in output
    assert not (root / f"host{i}" / "config.json").exists()


def test_two_processes_claiming_one_id_are_refused(tmp_path):
  job = _slurm_job_id()
  workers = [
    _launch(["auto", str(tmp_path)], _slurm_env(job, 0)) for _ in range(2)
  ]
  outputs = _finish(workers, timeout=60)
  for worker, output in zip(workers, outputs, strict=True):
    assert worker.returncode == 2, output[-3000:]
    (line,) = _error_lines(output)
    assert line.startswith(
      f"msjax: error: two processes claim process id 0 of 2 in {tmp_path}:"
    ), line
  assert not (tmp_path / "config.json").exists()
