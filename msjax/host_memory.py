"""Host allocator settings that let XLA:CPU reuse freed memory between calls.

Why: every execution of a compiled XLA:CPU program allocates its temporary
arena (hundreds of MB for a paper-size encoder step) and its outputs with
``malloc`` and frees them at the end. glibc serves requests above 32 MiB
(its largest mmap threshold) with a fresh ``mmap``, and requests made on a
worker thread come from a per-thread arena that falls back to ``mmap`` for
any request larger than its 64 MiB heap. Fresh mappings are zero-filled by
the kernel one 4 KiB page fault at a time: hundreds of thousands of faults
per call of a paper-size encoder step (measured numbers:
``benchmarks/results/README.md``).

:func:`reuse_freed_memory` (glibc only, through ``mallopt``), two levels:

* ``"reuse"``: ``M_MMAP_MAX = 0`` (the main arena serves every request
  from its ``brk`` heap, however large) and ``M_TRIM_THRESHOLD = -1``
  (freed memory at the top of the heap is kept, so the next call finds it
  mapped). Covers buffers allocated on the thread that made the setting
  only; XLA:CPU allocates outputs and temporaries on its own threads, so
  for jitted code this level alone changes little.
* ``"single_arena"``: also ``M_ARENA_MAX = 1``, so XLA's threads allocate
  from the main arena too: no faults per call. The cost is one arena lock
  for every thread: a job of many small allocations (a tiny model, the data
  feed and XLA threads) runs slower with it; the README's Benchmarks section
  has the measured numbers both ways.

Both keep the process at its peak heap size until it exits. A setting must
be made before other threads allocate (before ``import jax``) to cover
them: a thread keeps the arena it first used. Library code never changes
the allocator. The benchmarks apply the level that suits them (and
``--default-malloc`` opts out); the ``msjax`` command applies the level
named by ``MSJAX_HOST_MALLOC`` (``reuse`` or ``single_arena``; unset or
``default``: glibc's defaults). Any of glibc's own malloc environment
settings (``GLIBC_TUNABLES``, ``MALLOC_*``) or ``LD_PRELOAD`` always leaves
the allocator alone.
"""

import ctypes
import os

__all__ = [
  "ENV_VAR",
  "LEVELS",
  "configure_from_env",
  "reuse_freed_memory",
  "user_malloc_settings",
]

ENV_VAR = "MSJAX_HOST_MALLOC"

# <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_REUSE = (
  ("M_MMAP_MAX", _M_MMAP_MAX, 0),
  ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, -1),
)
#: Level -> ``mallopt`` calls ``(name, parameter, value)``, in order.
LEVELS = {
  "reuse": _REUSE,
  "single_arena": (("M_ARENA_MAX", _M_ARENA_MAX, 1), *_REUSE),
}

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


def reuse_freed_memory(
  level: str = "reuse", environ: dict | None = None
) -> dict[str, str]:
  """Sets glibc malloc to keep and reuse freed memory (see module doc).

  Args:
    level: ``"reuse"``, ``"single_arena"`` or ``"default"`` (no change).
    environ: the environment to consult for user malloc settings (default
      ``os.environ``); any of them leaves the allocator alone.

  Returns:
    A record for run and benchmark metadata: ``{"allocator": level}`` when
    applied, else ``{"allocator": "default", "reason": ...}``.

  Raises:
    ValueError: on an unknown level.
  """
  if level == "default":
    return {"allocator": "default", "reason": "level default"}
  if level not in LEVELS:
    raise ValueError(
      f"unknown host malloc level {level!r}; use default or one of"
      f" {sorted(LEVELS)}"
    )
  user = user_malloc_settings(environ)
  if user:
    return {"allocator": "default", "reason": "user settings " + ",".join(user)}
  libc = _glibc()
  if libc is None:
    return {"allocator": "default", "reason": "not glibc"}
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  libc.mallopt.restype = ctypes.c_int
  failed = [
    name
    for name, param, value in LEVELS[level]
    if not libc.mallopt(param, value)
  ]
  if failed:
    return {
      "allocator": "default",
      "reason": "mallopt refused " + ",".join(failed),
    }
  return {"allocator": level}


def configure_from_env(environ: dict | None = None) -> dict[str, str]:
  """Applies the level named by ``MSJAX_HOST_MALLOC`` (unset: ``default``).

  Args:
    environ: the environment (default ``os.environ``).

  Returns:
    The record of :func:`reuse_freed_memory`.

  Raises:
    ValueError: if the variable names an unknown level.
  """
  environ = os.environ if environ is None else environ
  return reuse_freed_memory(
    environ.get(ENV_VAR, "default") or "default", environ
  )
