"""msjax.host_memory: glibc malloc keeps freed memory for the next request."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from msjax import host_memory

_IS_GLIBC = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# Allocates, touches and frees a 64 MiB block twice, from the main thread and
# then from a new thread (whose glibc arena would otherwise mmap it), and
# reports the minor page faults of each second round.
_PROBE = r"""
import ctypes, json, resource, sys, threading
from msjax import host_memory
record = host_memory.reuse_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
SIZE = 64 << 20

def faults_of_round():
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  ptr = libc.malloc(SIZE)
  ctypes.memset(ptr, 1, SIZE)
  libc.free(ptr)
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_round()
main = faults_of_round()
out = {}
def worker():
  faults_of_round()
  out["thread"] = faults_of_round()
t = threading.Thread(target=worker)
t.start(); t.join()
print(json.dumps({"record": record, "main": main, "thread": out["thread"]}))
"""

_PAGES = (64 << 20) // 4096


def _probe(extra_env: dict) -> dict:
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in host_memory.user_malloc_settings() and k != host_memory.ENV_VAR
  }
  env.update(extra_env)
  done = subprocess.run(
    [sys.executable, "-c", _PROBE],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  )
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _IS_GLIBC, reason="glibc malloc only")
def test_freed_memory_is_reused_without_page_faults():
  applied = _probe({})
  assert applied["record"]["allocator"].startswith("glibc main arena")
  # A reused block is already mapped: no fault per page.
  assert applied["main"] < _PAGES // 20
  assert applied["thread"] < _PAGES // 20
  # With glibc's defaults a 64 MiB block is a fresh mapping every time
  # (transparent huge pages, where the system gives them to malloc, would
  # need fewer faults; this host's glibc does not ask for them by default).
  default = _probe({host_memory.ENV_VAR: "default"})
  assert default["record"] == {
    "allocator": "default",
    "reason": "MSJAX_HOST_MALLOC=default",
  }
  assert default["main"] > _PAGES // 2


def test_user_settings_are_left_alone():
  environ = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "HOME": "/"}
  assert host_memory.user_malloc_settings(environ) == ["GLIBC_TUNABLES"]
  record = host_memory.reuse_freed_memory(environ)
  assert record == {
    "allocator": "default",
    "reason": "user settings GLIBC_TUNABLES",
  }
  environ = {"MALLOC_ARENA_MAX": "1", "MALLOC_COLOR": "x", "LD_PRELOAD": "j"}
  assert host_memory.user_malloc_settings(environ) == [
    "LD_PRELOAD",
    "MALLOC_ARENA_MAX",
  ]
  opt_out = host_memory.reuse_freed_memory({host_memory.ENV_VAR: "default"})
  assert opt_out["allocator"] == "default"
