"""JAX's persistent compilation cache for the ``msjax`` command.

Compiling a train step is most of the time before the first step (tens of
seconds at paper size on a CPU). With the cache on, a second run of the same
config, a resume after an interruption, or the next seed of a sweep reads the
compiled executables from disk instead. Entries are keyed by the program's
HLO, the jax/jaxlib version, the device and the compiler flags, so a stale
entry is never used for another program.

Where the cache lives, first match wins:

1. ``--compile-cache DIR`` on the command line;
2. a directory JAX is already configured with (``JAX_COMPILATION_CACHE_DIR``);
3. ``$MSJAX_COMPILE_CACHE``;
4. ``$XDG_CACHE_HOME/msjax/jax`` (``~/.cache/msjax/jax`` without it).

Beside the compiled programs, ``DIR/msjax-steps`` (:func:`step_export_dir`)
holds each train step as traced once (:mod:`msjax.train.step_export`): a
later run of the same config loads it instead of tracing the method again.
``--no-compile-cache`` turns both off. Library code never changes the cache;
only :func:`configure` does, and it must run before the first compilation
(JAX reads the setting once per process).
"""

import os
import pathlib
from collections.abc import Mapping

__all__ = [
  "ENV_VAR",
  "MIN_COMPILE_SECONDS",
  "STEPS_SUBDIR",
  "cache_dir",
  "configure",
  "step_export_dir",
]

#: Environment variable naming the cache directory (below a JAX setting).
ENV_VAR = "MSJAX_COMPILE_CACHE"

#: Programs that compile faster than this are not written to the cache
#: (JAX's own default is 1 s, which leaves out the many small programs of
#: evaluation and the data feed that together cost seconds per start).
MIN_COMPILE_SECONDS = 0.1

#: Subdirectory of the cache holding the exported train steps.
STEPS_SUBDIR = "msjax-steps"


def cache_dir(
  flag: str | None,
  jax_dir: str | None,
  env: Mapping[str, str],
) -> str:
  """The cache directory for a command line (see the module docstring).

  Args:
    flag: the ``--compile-cache`` value, or ``None``.
    jax_dir: JAX's ``jax_compilation_cache_dir`` setting (``None``/empty:
      unset).
    env: the environment (``MSJAX_COMPILE_CACHE``, ``XDG_CACHE_HOME``,
      ``HOME``).

  Returns:
    An absolute path (``~`` expanded).
  """
  home = env.get("HOME") or str(pathlib.Path.home())
  if flag:
    path = flag
  elif jax_dir:
    path = jax_dir
  elif env.get(ENV_VAR):
    path = env[ENV_VAR]
  else:
    base = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    path = os.path.join(base, "msjax", "jax")
  if path == "~" or path.startswith("~/"):
    path = home + path[1:]
  return os.path.abspath(path)


def configure(flag: str | None, enabled: bool = True) -> str | None:
  """Turns JAX's persistent compilation cache on (or off) for this process.

  Args:
    flag: the ``--compile-cache`` value, or ``None``.
    enabled: ``False`` for ``--no-compile-cache``.

  Returns:
    The cache directory in use, or ``None`` when the cache is off.

  Raises:
    ValueError: the directory cannot be created (one line naming it).
  """
  import jax  # noqa: PLC0415 (the command imports jax after parsing)

  if not enabled:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  path = cache_dir(flag, jax.config.jax_compilation_cache_dir, os.environ)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as error:
    raise ValueError(
      f"compilation cache directory {path} cannot be created"
      f" ({error.strerror}); pass --compile-cache DIR or --no-compile-cache"
    ) from error
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", path)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update(
      "jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS
    )
  return path


def step_export_dir(path: str | None) -> str | None:
  """Where the exported train steps live for cache directory ``path``.

  Args:
    path: what :func:`configure` returned (``None``: the cache is off).

  Returns:
    ``path/msjax-steps``, or ``None`` when ``path`` is ``None``.
  """
  return None if path is None else os.path.join(path, STEPS_SUBDIR)
