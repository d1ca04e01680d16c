"""The train step traced once, stored with ``jax.export``, reused by later runs.

JAX's persistent compilation cache keys compiled programs by their HLO, so
a run finds its step's executable on disk only after tracing and lowering
the step again in Python: for a paper-size model that is most of a warm
start (MoCo on a 2-core CPU: 5.4 s of trace + lower, 3.8 s of cache load;
``benchmarks/results/README.md``). :class:`ExportedStep` keeps the lowered
step itself: the first run exports it (``jax.export``) into a directory,
later runs deserialise it (tens of milliseconds) and hand it to the
compilation cache without tracing the method at all.

A stored step is found by a fingerprint of everything its trace depends
on, so a stale one is never used:

* this file's format version, the versions of jax, jaxlib, flax, optax,
  numpy and ml-collections (:data:`DISTRIBUTIONS`) and the jax settings
  that change a trace (:data:`TRACE_SETTINGS`);
* the source of every module of the ``msjax`` package, and of the modules
  that define the method's functions when they live outside it (a fork's
  method);
* the config, except ``seed`` (an argument of the step, not a constant in
  it: :mod:`msjax.train.step`), so the seeds of a sweep share one entry;
* the structure, shapes, dtypes and shardings of the step's arguments
  (which also fix the devices and the mesh).

At most :data:`MAX_ENTRIES` entries stay, the least recently used
leaving first (:func:`evict`). An unreadable entry (torn write, another
jax) is traced again and replaced; entries are written to a temporary
file and renamed, so processes sharing the directory never read a partial
one. A step ``jax.export`` refuses (a host callback in a fork's loss) is
jitted as before, with a warning. Only single-process runs use it (a
multi-process step is jitted as before).
"""

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from jax import export

from msjax.methods.interface import Method

__all__ = [
  "DISTRIBUTIONS",
  "FORMAT",
  "MAX_ENTRIES",
  "TRACE_SETTINGS",
  "ExportedStep",
  "evict",
  "fingerprint",
]

#: Bumped when what an entry holds or how it is called changes.
FORMAT = "msjax-step-export-1"

#: Installed packages whose code runs while the step is traced.
DISTRIBUTIONS = ("jax", "jaxlib", "flax", "optax", "numpy", "ml-collections")

#: Entries kept in a directory (least recently used go first).
MAX_ENTRIES = 128

#: jax settings (``jax.config`` attributes) that change what a trace gives.
TRACE_SETTINGS = (
  "jax_enable_x64",
  "jax_default_matmul_precision",
  "jax_default_prng_impl",
  "jax_threefry_partitionable",
  "jax_numpy_rank_promotion",
  "jax_numpy_dtype_promotion",
)

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]  # msjax/


def _file_digest(path: str) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@functools.cache
def _package_digest() -> str:
  """sha256 over the relative paths and bytes of ``msjax/**/*.py``.

  Read once per process (msjax's own source does not change under a run);
  the files of a method outside msjax are read at every fingerprint.
  """
  digest = hashlib.sha256()
  for path in sorted(_PACKAGE.rglob("*.py")):
    digest.update(str(path.relative_to(_PACKAGE)).encode())
    digest.update(_file_digest(str(path)).encode())
  return digest.hexdigest()


def _outside_sources(method: Method) -> list[str]:
  """Digests of the files defining ``method``'s functions outside msjax."""
  values = [getattr(method, f.name) for f in dataclasses.fields(method)]
  files = set()
  for value in values:
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    if path and not pathlib.Path(path).resolve().is_relative_to(_PACKAGE):
      files.add(str(pathlib.Path(path).resolve()))
  return [f"{path}:{_file_digest(path)}" for path in sorted(files)]


def _describe(leaf: Any) -> str:
  sharding = getattr(leaf, "sharding", None)
  if isinstance(sharding, jax.sharding.NamedSharding):
    mesh = sharding.mesh
    place = (
      f"{sharding.spec} over {dict(mesh.shape)}"
      f" {[d.id for d in mesh.devices.flat]}"
    )
  else:
    place = repr(sharding)
  return f"{leaf.shape} {leaf.dtype} {place}"


def fingerprint(
  method: Method, config: ml_collections.ConfigDict, args: tuple
) -> str:
  """The hex key of the step of ``method`` / ``config`` on ``args``.

  Args:
    method: the method whose step is traced.
    config: the experiment config (``seed`` is left out).
    args: the step's arguments, arrays or ``ShapeDtypeStruct`` s with
      shardings.

  Returns:
    A sha256 hex digest (see the module docstring for what it covers).
  """
  keyed = config.copy_and_resolve_references()
  with keyed.unlocked():
    del keyed["seed"]
  leaves, treedef = jax.tree.flatten(args)
  parts = {
    "format": FORMAT,
    "versions": {d: importlib.metadata.version(d) for d in DISTRIBUTIONS},
    "settings": {n: str(getattr(jax.config, n)) for n in TRACE_SETTINGS},
    "platform": jax.devices()[0].platform,
    "device_kind": jax.devices()[0].device_kind,
    "package": _package_digest(),
    "outside": _outside_sources(method),
    "config": keyed.to_json_best_effort(sort_keys=True),
    "tree": str(treedef),
    "leaves": [_describe(leaf) for leaf in leaves],
  }
  text = json.dumps(parts, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()


def evict(directory: pathlib.Path, keep: int) -> list[pathlib.Path]:
  """Deletes all but the ``keep`` most recently used entries of ``directory``.

  Every edit of msjax's source or of a config makes a new entry (0.6-1.6
  MB for the paper-size methods); the stale ones go, oldest first by
  modification time (a load refreshes it).

  Returns:
    The paths deleted.
  """
  entries = sorted(
    directory.glob("*.jaxexport"), key=lambda p: p.stat().st_mtime_ns
  )
  gone = entries[: max(len(entries) - keep, 0)]
  for path in gone:
    path.unlink(missing_ok=True)
  return gone


class ExportedStep:
  """``(state, batch, seed) -> (state, metrics)``, traced at most once.

  Called like the jitted step it stands for; its first call loads the
  stored step (or traces, exports and stores it), the calls after reuse the
  compiled program. The state is donated, as by the jitted step.

  Attributes:
    path: the entry's file (known after the first call).
    loaded: whether the first call found the entry (``False``: traced).
    fallback: the plain jitted step, used when the step could not be
      exported (``None`` otherwise).
  """

  def __init__(
    self,
    jitted: Callable,
    directory: str,
    key: Callable[[tuple], str],
    state_sharding: Any,
    batch_sharding: jax.sharding.Sharding,
    replicated: jax.sharding.Sharding,
  ) -> None:
    """Stores what the first call needs.

    Args:
      jitted: the jitted ``(state, batch, seed) -> (state, metrics)`` it
        stands for (exported once; called as it is where export fails).
      directory: where entries live (created on first write).
      key: ``args -> fingerprint`` (see :func:`fingerprint`).
      state_sharding: shardings of the state pytree.
      batch_sharding: the sharding of every batch leaf.
      replicated: the sharding of the seed and the metrics.
    """
    self._jitted = jitted
    self._directory = pathlib.Path(directory)
    self._key = key
    self._state_sharding = state_sharding
    self._batch_sharding = batch_sharding
    self._replicated = replicated
    self._compiled = None
    self._state_def = None
    self.path: pathlib.Path | None = None
    self.loaded = False
    self.fallback: Callable | None = None

  def __call__(self, state: Any, batch: Any, seed: Any) -> tuple[Any, dict]:
    """One step: ``(state, batch, seed) -> (new state, metrics)``."""
    args = (state, batch, seed)
    if self._compiled is None and self.fallback is None:
      self._prepare(args)
    if self.fallback is not None:
      return self.fallback(state, batch, seed)
    state_leaves = jax.tree.leaves(state)
    out_leaves, metrics = self._compiled(
      *state_leaves, *jax.tree.leaves(batch), seed
    )
    return jax.tree.unflatten(self._state_def, out_leaves), metrics

  def _shardings(self, args: tuple) -> tuple[tuple, list]:
    state, batch, _ = args
    state_shardings = jax.tree.leaves(self._state_sharding)
    batch_shardings = [self._batch_sharding] * len(jax.tree.leaves(batch))
    return (
      (*state_shardings, *batch_shardings, self._replicated),
      state_shardings,
    )

  def _prepare(self, args: tuple) -> None:
    state, _, _ = args
    self._state_def = jax.tree.structure(state)
    in_shardings, state_shardings = self._shardings(args)
    self.path = self._directory / f"{self._key(args)}.jaxexport"
    exported = self._load()
    self.loaded = exported is not None
    if exported is None:
      try:
        exported = self._export(args, in_shardings, state_shardings)
      except Exception as error:  # noqa: BLE001 (the jitted step decides)
        self._fall_back(error)
        return
      self._store(exported)
    num_state = len(state_shardings)
    self._compiled = jax.jit(
      exported.call,
      in_shardings=in_shardings,
      out_shardings=(state_shardings, self._replicated),
      donate_argnums=tuple(range(num_state)),
    )

  def _fall_back(self, error: Exception) -> None:
    """The step as plain ``jax.jit`` where ``jax.export`` refuses it.

    A step that cannot be exported (e.g. a host callback in a fork's loss)
    still trains, traced in every run; a step that cannot be traced at all
    raises its own error from the jitted step's first call.
    """
    first_line = (str(error).strip().splitlines() or [""])[0]
    warnings.warn(
      f"train step not stored ({type(error).__name__}: {first_line[:200]});"
      " it is traced again in every run",
      stacklevel=4,
    )
    self.fallback = self._jitted

  def _load(self) -> export.Exported | None:
    try:
      blob = self.path.read_bytes()
    except FileNotFoundError:
      return None
    try:
      os.utime(self.path)  # last used: what evict keeps
    except OSError:
      pass  # a read-only cache is still read
    try:
      return export.deserialize(bytearray(blob))
    except Exception as error:  # noqa: BLE001 (any damage: trace again)
      warnings.warn(
        f"stored train step {self.path} is unreadable"
        f" ({type(error).__name__}); tracing it again",
        stacklevel=3,
      )
      return None

  def _export(
    self, args: tuple, in_shardings: tuple, state_shardings: list
  ) -> export.Exported:
    treedef = jax.tree.structure(args)
    state_def = self._state_def
    step = self._jitted

    def flat_step(*leaves: jax.Array) -> tuple[list, dict]:
      new_state, metrics = step(*jax.tree.unflatten(treedef, leaves))
      new_leaves, new_def = jax.tree.flatten(new_state)
      if new_def != state_def:
        raise ValueError(
          f"the step changed the state's structure: {state_def} -> {new_def}"
        )
      return new_leaves, metrics

    jitted = jax.jit(
      flat_step,
      in_shardings=in_shardings,
      out_shardings=(state_shardings, self._replicated),
    )
    specs = [
      jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)
      for leaf, sharding in zip(
        jax.tree.leaves(args), in_shardings, strict=True
      )
    ]
    return export.export(jitted)(*specs)

  def _store(self, exported: export.Exported) -> None:
    self._directory.mkdir(parents=True, exist_ok=True)
    evict(self._directory, MAX_ENTRIES - 1)
    with tempfile.NamedTemporaryFile(
      dir=self._directory, suffix=".tmp", delete=False
    ) as handle:
      handle.write(exported.serialize())
    os.chmod(handle.name, 0o644)  # as readable as the cache's own files
    os.replace(handle.name, self.path)
