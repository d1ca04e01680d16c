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
# then from a new thread (whose own glibc arena would mmap it), and reports
# the minor page faults of each second round. argv[1]: the level.
_PROBE = r"""
import ctypes, json, resource, sys, threading
from msjax import host_memory
record = host_memory.reuse_freed_memory(sys.argv[1])
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


def _probe(level: str, extra_env: dict | None = None) -> dict:
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in host_memory.user_malloc_settings() and k != host_memory.ENV_VAR
  }
  env.update(extra_env or {})
  done = subprocess.run(
    [sys.executable, "-c", _PROBE, level],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  )
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _IS_GLIBC, reason="glibc malloc only")
def test_freed_memory_is_reused_without_page_faults():
  # With glibc's defaults a 64 MiB block is a fresh mapping every time.
  default = _probe("default")
  assert default["record"] == {
    "allocator": "default",
    "reason": "level default",
  }
  assert default["main"] > _PAGES // 2
  assert default["thread"] > _PAGES // 2
  # "reuse": the main thread's block is already mapped (no fault per page);
  # a new thread's arena still maps its own.
  reuse = _probe("reuse")
  assert reuse["record"] == {"allocator": "reuse"}
  assert reuse["main"] < _PAGES // 20
  assert reuse["thread"] > _PAGES // 2
  # "single_arena": every thread allocates from the main arena.
  single = _probe("single_arena")
  assert single["record"] == {"allocator": "single_arena"}
  assert single["main"] < _PAGES // 20
  assert single["thread"] < _PAGES // 20
  # A user's own malloc setting wins.
  user = _probe("single_arena", {"MALLOC_TOP_PAD_": "0"})
  assert user["record"]["reason"] == "user settings MALLOC_TOP_PAD_"
  assert user["thread"] > _PAGES // 2


def test_user_settings_and_levels():
  environ = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "HOME": "/"}
  assert host_memory.user_malloc_settings(environ) == ["GLIBC_TUNABLES"]
  record = host_memory.reuse_freed_memory("reuse", environ)
  assert record == {
    "allocator": "default",
    "reason": "user settings GLIBC_TUNABLES",
  }
  environ = {"MALLOC_ARENA_MAX": "1", "MALLOC_COLOR": "x", "LD_PRELOAD": "j"}
  assert host_memory.user_malloc_settings(environ) == [
    "LD_PRELOAD",
    "MALLOC_ARENA_MAX",
  ]
  with pytest.raises(ValueError, match="unknown host malloc level 'fast'"):
    host_memory.reuse_freed_memory("fast")
  # The command's variable: unset or empty means glibc's defaults.
  for environ in ({}, {host_memory.ENV_VAR: ""}):
    assert host_memory.configure_from_env(environ)["allocator"] == "default"
  with pytest.raises(ValueError, match="unknown host malloc level"):
    host_memory.configure_from_env({host_memory.ENV_VAR: "yes"})
