"""Host allocator setting that lets XLA:CPU reuse freed memory between calls.

Why: every execution of a compiled XLA:CPU program allocates its temporary
arena (hundreds of MB for a paper-size encoder step) and its outputs with
``malloc`` and frees them at the end. glibc serves requests above 32 MiB
(its largest mmap threshold) with a fresh ``mmap``, and requests made on a
worker thread come from a per-thread arena that falls back to ``mmap`` for
any request larger than its 64 MiB heap. Fresh mappings are zero-filled by
the kernel one 4 KiB page fault at a time: the SWIN MOD encoder pair's
forward+backward took about 470,000 faults (1.2 s of kernel time) per
call, and a 4096 x 3000 Sinkhorn call spends half its time on them.

What :func:`reuse_freed_memory` does (glibc only, through ``mallopt``):

* ``M_ARENA_MAX = 1``: every thread allocates from the main arena, which
  grows with ``brk`` and serves requests of any size;
* ``M_MMAP_MAX = 0``: no request is served by a private ``mmap``;
* ``M_TRIM_THRESHOLD = -1``: freed memory at the top of the heap is kept
  (never returned to the system), so the next call finds it mapped.

The cost: the process keeps its peak heap size until it exits, and all
threads share one arena lock (XLA makes few, large allocations). It must
run before other threads start allocating (before ``import jax``) to
cover them: a thread keeps the arena it first used. The ``msjax`` command
and the benchmarks call it first thing; library code never does.

Setting ``MSJAX_HOST_MALLOC=default``, any of glibc's own malloc
environment settings (``GLIBC_TUNABLES``, ``MALLOC_*``) or ``LD_PRELOAD``
leaves the allocator alone.
"""

import ctypes
import os

__all__ = ["ENV_VAR", "reuse_freed_memory", "user_malloc_settings"]

ENV_VAR = "MSJAX_HOST_MALLOC"

# <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

# Environment variables through which a user chose an allocator setting.
_USER_SETTINGS = (
  "GLIBC_TUNABLES",
  "LD_PRELOAD",
  "MALLOC_ARENA_MAX",
  "MALLOC_ARENA_TEST",
  "MALLOC_CHECK_",
  "MALLOC_MMAP_MAX_",
  "MALLOC_MMAP_THRESHOLD_",
  "MALLOC_PERTURB_",
  "MALLOC_TOP_PAD_",
  "MALLOC_TRIM_THRESHOLD_",
)

_SETTINGS = (
  ("M_ARENA_MAX", _M_ARENA_MAX, 1),
  ("M_MMAP_MAX", _M_MMAP_MAX, 0),
  ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, -1),
)


def user_malloc_settings(environ: dict | None = None) -> list[str]:
  """Names of the malloc settings present in ``environ``.

  Args:
    environ: an environment mapping (default ``os.environ``).

  Returns:
    Sorted names among ``GLIBC_TUNABLES``, glibc's ``MALLOC_*`` variables
    and ``LD_PRELOAD`` (another allocator, e.g. jemalloc or tcmalloc).
  """
  environ = os.environ if environ is None else environ
  return sorted(name for name in _USER_SETTINGS if name in environ)


def _glibc() -> ctypes.CDLL | None:
  """The C library this process runs on, if it is glibc."""
  try:
    libc = ctypes.CDLL(None)  # the symbols the process already has loaded
  except OSError:
    return None
  if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt")):
    return None
  return libc


def reuse_freed_memory(environ: dict | None = None) -> dict[str, object]:
  """Configures glibc malloc to keep and reuse freed memory (module doc).

  Args:
    environ: the environment to consult (default ``os.environ``).

  Returns:
    A record for benchmark and run metadata: ``{"allocator": "glibc
    main arena, no mmap, no trim"}`` when applied, else ``{"allocator":
    ..., "reason": ...}`` saying why the allocator was left as it is.
  """
  environ = os.environ if environ is None else environ
  if environ.get(ENV_VAR, "") == "default":
    return {"allocator": "default", "reason": f"{ENV_VAR}=default"}
  user = user_malloc_settings(environ)
  if user:
    return {"allocator": "default", "reason": "user settings " + ",".join(user)}
  libc = _glibc()
  if libc is None:
    return {"allocator": "default", "reason": "not glibc"}
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  libc.mallopt.restype = ctypes.c_int
  failed = [
    name for name, param, value in _SETTINGS if not libc.mallopt(param, value)
  ]
  if failed:
    return {
      "allocator": "default",
      "reason": "mallopt refused " + ",".join(failed),
    }
  return {"allocator": "glibc main arena, no mmap, no trim"}
