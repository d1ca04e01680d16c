"""Dataset preparation that exactly one process performs while others wait.

Every process of a multi-host job (and any other job sharing the data
directory) calls ``prepare_once(directory, is_done, prepare)``. The first to
create the lock file ``directory/.msjax_prepare.lock`` (an atomic
``O_CREAT | O_EXCL``, which also holds on NFS v3+) prepares; the others poll
until the lock is gone and ``is_done()`` holds. The preparing process touches
the lock every few seconds; a lock not touched for ``stale_s`` (its process
died) is removed by the next waiter, which then prepares itself.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["LOCK_NAME", "prepare_once"]

LOCK_NAME = ".msjax_prepare.lock"


def _take(path: str) -> bool:
  """Creates the lock file; False if it exists."""
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
  return True


def _heartbeat(path: str, stop: threading.Event, every_s: float) -> None:
  while not stop.wait(every_s):
    try:
      os.utime(path)
    except OSError:
      return


def prepare_once(
  directory: str,
  is_done: Callable[[], bool],
  prepare: Callable[[], None],
  *,
  poll_s: float = 0.5,
  stale_s: float = 120.0,
  timeout_s: float = 24 * 3600.0,
) -> None:
  """Runs ``prepare`` in one process; the others wait until ``is_done()``.

  Args:
    directory: the shared data directory (created if absent).
    is_done: whether the prepared files are complete (cheap; polled).
    prepare: writes them; called at most once at a time over all processes.
    poll_s: seconds between a waiter's checks.
    stale_s: a lock untouched this long belongs to a dead process.
    timeout_s: a waiter gives up after this long (TimeoutError).

  Raises:
    TimeoutError: still not prepared after ``timeout_s``.
  """
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, LOCK_NAME)
  deadline = time.monotonic() + timeout_s
  while not is_done():
    if _take(path):
      stop = threading.Event()
      beat = threading.Thread(
        target=_heartbeat, args=(path, stop, stale_s / 4), daemon=True
      )
      beat.start()
      try:
        if not is_done():  # another process may have finished meanwhile
          prepare()
      finally:
        stop.set()
        beat.join()
        os.unlink(path)
      return
    try:
      if time.time() - os.stat(path).st_mtime > stale_s:
        os.unlink(path)  # its process died: the next loop takes over
        continue
    except FileNotFoundError:
      continue
    if time.monotonic() > deadline:
      raise TimeoutError(
        f"{path} is held by another process for over {timeout_s:.0f} s; if "
        "no process prepares this dataset, delete the lock file."
      )
    time.sleep(poll_s)
