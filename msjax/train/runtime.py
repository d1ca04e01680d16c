"""Process-level setup shared by training and evaluation.

Distributed initialisation, method lookup and data-source opening, each
turning user mistakes into one-line :mod:`msjax.train.errors`.

Distributed launch (``train.distributed.enabled``; docs/multihost.md): the
coordinator address, process count and process id are taken from the config
only where given (``coordinator_address`` non-empty, ``num_processes >= 1``,
``process_id >= 0``); the rest is left to ``jax.distributed.initialize``'s
auto-detection (SLURM, Open MPI, Cloud TPU pods, Kubernetes). Before
initialising, each process claims its id in the workdir, so that two
processes of one launch that claim the same id are refused (JAX itself would
hang, then abort); after initialising, the processes check that they all see
one shared workdir and that the cluster's task count matches the processes
JAX connected.
"""

import json
import os
import pathlib
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.methods import METHODS, Method
from msjax.train.errors import ConfigError, DataError

__all__ = [
  "SourceFactory",
  "first_line",
  "get_method",
  "maybe_initialize_distributed",
  "open_source",
  "has_labels",
  "sync_processes",
]

LAUNCH_DIR = ".msjax_launch"
# A claim older than this is left over from a crashed launch (claims live only
# while jax.distributed.initialize runs; JAX's own timeout is 300 s).
_CLAIM_LIFETIME_S = 600.0
_CLAIM_GRACE_S = 1.0
_REFUSED_LIFETIME_S = 15.0

SourceFactory = Callable[[ml_collections.ConfigDict, str], Any]


def first_line(error: BaseException) -> str:
  """The first non-empty line of an exception's message (or its type)."""
  for line in str(error).splitlines():
    if line.strip():
      return line.strip()
  return type(error).__name__


def _cluster_env() -> Any:
  """The cluster environment JAX would auto-detect (a ClusterEnv), or None."""
  try:
    from jax._src import clusters  # noqa: PLC0415 (private: best effort)

    for env in clusters.ClusterEnv._cluster_types:  # noqa: SLF001
      if not getattr(env, "opt_in_only_method", False) and env.is_env_present():
        return env
  except Exception:  # noqa: BLE001 (detection is a courtesy)
    return None
  return None


def _alive(host: str, pid: int) -> bool:
  if host != socket.gethostname():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _live_claim(path: pathlib.Path) -> dict | None:
  """The record of a claim that still counts, or None (stale, unreadable).

  A claim counts while its process lives and it is younger than the claim
  lifetime; a refused claim (its process reported a duplicate and ended)
  counts for a few seconds more, so that the other claimant refuses too.
  """
  try:
    record = json.loads(path.read_text())
    age = time.time() - path.stat().st_mtime
  except (OSError, ValueError):
    return None
  if record.get("refused"):
    return record if age < _REFUSED_LIFETIME_S else None
  if age < _CLAIM_LIFETIME_S and _alive(record["host"], int(record["pid"])):
    return record
  return None


def _rival(mine: pathlib.Path, process_id: int) -> dict | None:
  """A claim on ``process_id`` that counts, other than ``mine``, or None."""
  for other in mine.parent.glob(f"process-{process_id}.*"):
    if other != mine and (record := _live_claim(other)) is not None:
      return record
  return None


def _duplicate_message(
  workdir: str, process_id: int, num_processes: int | None, record: dict
) -> str:
  total = "" if num_processes is None else f" of {num_processes}"
  return (
    f"two processes claim process id {process_id}{total} in {workdir}:"
    f" this one (host {socket.gethostname()}, pid {os.getpid()}) and host"
    f" {record['host']}, pid {record['pid']}; give every process its own id"
    " (SLURM_PROCID, or train.distributed.process_id)"
  )


class _Claim:
  """This process's claim on its id while ``jax.distributed`` connects.

  A watcher thread keeps looking for a second claim on the same id: JAX
  would wait for the missing process until its timeout and then abort, so
  the watcher prints the one-line error and ends the process (status 2).
  """

  def __init__(
    self,
    workdir: str,
    token: str,
    process_id: int,
    num_processes: int | None,
  ) -> None:
    directory = pathlib.Path(workdir) / LAUNCH_DIR / token
    directory.mkdir(parents=True, exist_ok=True)
    host, pid = socket.gethostname(), os.getpid()
    self.path = directory / f"process-{process_id}.{host}.{pid}"
    self.path.write_text(
      json.dumps({"host": host, "pid": pid, "time": time.time()})
    )
    self._args = (workdir, process_id, num_processes)
    time.sleep(_CLAIM_GRACE_S)  # let processes started together meet
    record = _rival(self.path, process_id)
    if record is not None:
      self._refuse()
      raise ConfigError(_duplicate_message(*self._args, record))
    self._stop = threading.Event()
    self._watcher = threading.Thread(target=self._watch, daemon=True)
    self._watcher.start()

  def _watch(self) -> None:
    while not self._stop.wait(0.25):
      record = _rival(self.path, self._args[1])
      if record is not None and not self._stop.is_set():
        self._refuse()
        print(
          f"msjax: error: {_duplicate_message(*self._args, record)}",
          file=sys.stderr,
          flush=True,
        )
        os._exit(2)

  def _refuse(self) -> None:
    """Marks the claim refused: the rival sees it and refuses as well."""
    record = json.loads(self.path.read_text())
    self.path.write_text(json.dumps({**record, "refused": True}))

  def release(self) -> None:
    """Stops watching, removes the claim, stale claims and empty folders."""
    if hasattr(self, "_stop"):
      self._stop.set()
      self._watcher.join()
    self.path.unlink(missing_ok=True)
    for other in self.path.parent.glob("process-*"):
      if _live_claim(other) is None:
        other.unlink(missing_ok=True)
    for directory in (self.path.parent, self.path.parent.parent):
      try:
        directory.rmdir()  # only when empty
      except OSError:
        break


def sync_processes(name: str) -> None:
  """A barrier across processes (nothing to do in a single process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415

    multihost_utils.sync_global_devices(name)


def _check_shared_workdir(workdir: str) -> None:
  """Every process writes a file in the workdir; all must see all of them.

  Raises:
    ConfigError: some process does not see every other process's file (the
      workdir is not one shared directory).
  """
  from jax.experimental import multihost_utils  # noqa: PLC0415

  nonce = np.zeros(2, np.uint32)
  if jax.process_index() == 0:
    nonce = np.frombuffer(os.urandom(8), np.uint32)
  nonce = np.asarray(multihost_utils.broadcast_one_to_all(nonce))
  token = "check-" + "".join(f"{int(v):08x}" for v in nonce)
  directory = pathlib.Path(workdir) / LAUNCH_DIR / token
  directory.mkdir(parents=True, exist_ok=True)
  (directory / f"process-{jax.process_index()}").write_text(
    socket.gethostname()
  )
  multihost_utils.sync_global_devices("msjax workdir check: written")
  count = jax.process_count()
  seen = {int(p.name.split("-")[1]) for p in directory.glob("process-*")}
  ok = np.asarray(seen == set(range(count)), np.int32)
  flags = np.asarray(multihost_utils.process_allgather(ok)).reshape(-1)
  multihost_utils.sync_global_devices("msjax workdir check: read")
  (directory / f"process-{jax.process_index()}").unlink(missing_ok=True)
  if jax.process_index() == 0 or not flags.all():
    shutil.rmtree(directory, ignore_errors=True)
  try:
    directory.parent.rmdir()
  except OSError:
    pass
  if not flags.all():
    blind = [i for i, flag in enumerate(flags) if not flag]
    raise ConfigError(
      f"--workdir {workdir} is not shared by the {count} processes: process"
      f" {blind} did not see the files the others wrote there; put the workdir"
      " on a filesystem every host mounts"
    )


def _launch_token(env: Any, coordinator: str | None) -> str:
  if env is not None and "SLURM_JOB_ID" in os.environ:
    step = os.environ.get("SLURM_STEP_ID", "0")
    text = f"slurm-{os.environ['SLURM_JOB_ID']}-{step}"
  else:
    text = f"{getattr(env, 'name', 'explicit')}-{coordinator or 'auto'}"
  return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def maybe_initialize_distributed(
  section: ml_collections.ConfigDict, workdir: str | None = None
) -> None:
  """Calls ``jax.distributed.initialize`` when ``train.distributed`` asks.

  Args:
    section: ``config.train.distributed`` (``enabled``,
      ``coordinator_address`` ("" = auto-detect), ``num_processes`` and
      ``process_id`` (-1 = auto-detect), ``cpu_collectives``: the CPU
      collectives implementation, e.g. "gloo").
    workdir: the run's directory: checked to be shared by every process,
      and used to refuse two processes claiming one id.

  Raises:
    ConfigError: no coordinator given and no cluster detected; an explicit
      coordinator without the process count and id; two processes claiming
      one id; a workdir that is not shared; a cluster whose task count
      differs from the processes JAX connected; or any error of
      ``jax.distributed.initialize`` (one line).
  """
  if not section.enabled or jax.distributed.is_initialized():
    return
  coordinator = section.coordinator_address or None
  num = section.num_processes if section.num_processes >= 1 else None
  process_id = section.process_id if section.process_id >= 0 else None
  env = _cluster_env()
  if env is None and (num is None or process_id is None):
    if coordinator is None and not os.environ.get("JAX_COORDINATOR_ADDRESS"):
      raise ConfigError(
        "train.distributed.enabled=true, but no coordinator was given and no"
        " cluster was detected (SLURM, Open MPI, Cloud TPU, Kubernetes): set"
        " train.distributed.coordinator_address, num_processes and process_id"
        " (see docs/multihost.md)"
      )
    raise ConfigError(
      "train.distributed: no cluster was detected to supply the process"
      " count and id: set train.distributed.num_processes and process_id"
    )
  if section.cpu_collectives:
    jax.config.update(
      "jax_cpu_collectives_implementation", section.cpu_collectives
    )
  claim = None
  if workdir is not None:
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
      raise ConfigError(f"--workdir {workdir} is a file, not a directory")
    try:
      expected_id = env.get_process_id() if process_id is None else process_id
      expected_num = env.get_process_count() if num is None else num
    except Exception:  # noqa: BLE001 (let JAX report it)
      expected_id = expected_num = None
    if expected_id is not None:
      claim = _Claim(
        workdir, _launch_token(env, coordinator), expected_id, expected_num
      )
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator,
      num_processes=num,
      process_id=process_id,
    )
  except (ValueError, TypeError, RuntimeError) as error:
    raise ConfigError(
      f"jax.distributed.initialize failed: {first_line(error)}"
    ) from None
  finally:
    if claim is not None:
      claim.release()
  if env is not None and num is not None:
    try:
      tasks = env.get_process_count()
    except Exception:  # noqa: BLE001
      tasks = None
    if tasks is not None and tasks != jax.process_count():
      raise ConfigError(
        f"the {env.name} cluster runs {tasks} tasks, but"
        f" train.distributed.num_processes={num} connected"
        f" {jax.process_count()}: every task would claim the same ids; leave"
        " num_processes and process_id unset (-1) to auto-detect"
      )
  if workdir is not None and jax.process_count() > 1:
    _check_shared_workdir(workdir)


def has_labels(source: Any) -> bool:
  """Whether a source has a labelled example (a label >= 0).

  Reads ``source.labels()`` (or a ``labels`` array attribute); a source
  that exposes no labels counts as labelled (the evaluation will tell).
  """
  labels = getattr(source, "labels", None)
  if callable(labels):
    labels = labels()
  if labels is None:
    return not hasattr(source, "labels")
  return bool(np.any(np.asarray(labels) >= 0))


def get_method(name: str) -> Method:
  """The method ``METHODS[name]``."""
  if name not in METHODS:
    raise ConfigError(f"unknown method {name!r}; known: {sorted(METHODS)}")
  return METHODS[name]


def open_source(
  data_config: ml_collections.ConfigDict,
  split: str,
  make_source: SourceFactory | None = None,
) -> Any:
  """Opens the data source a config names, failing with one line.

  Args:
    data_config: ``config.data``.
    split: e.g. "train" or "test".
    make_source: the factory (default ``msjax.data.make_source``).

  Returns:
    The source.

  Raises:
    DataError: the source cannot be opened (e.g. files not downloaded).
  """
  if make_source is None:
    from msjax.data import make_source  # noqa: PLC0415

  try:
    return make_source(data_config, split)
  except Exception as error:  # noqa: BLE001 (boundary to user data)
    raise DataError(
      f"data source {data_config.source!r} ({split}): {first_line(error)}"
    ) from error
