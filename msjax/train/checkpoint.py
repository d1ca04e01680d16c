"""Orbax checkpointing: periodic + final saves, keep-N, async, resume.

A checkpoint holds the train state (restored into an abstract target that
carries the shardings, so it comes back born sharded; ``restore_raw`` reads
it back as host numpy without a target) and a small JSON record
of the progress clock (seconds of training so far).

A damaged checkpoint (a truncated array file, an empty ``_METADATA``) does
not block a resume: :meth:`Checkpointer.restore_intact` and
:meth:`Checkpointer.restore_raw_intact` fall back to the newest checkpoint
that reads back, print one warning line naming the skipped step, and (when
writable) move the damaged directory aside to ``<step>.corrupt-<n>``; nothing
is deleted.
"""

import contextlib
import logging
import pathlib
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "warn"]


def warn(text: str) -> None:
  """Prints one ``msjax: warning: ...`` line on stderr."""
  print(f"msjax: warning: {text}", file=sys.stderr, flush=True)


def _drop_closed_loop_reports(previous: Any) -> Any:
  """An unraisable-exception hook that drops orbax's closed-loop echoes.

  When orbax gives up restoring a damaged checkpoint, reads it had started
  still complete later and call back into its closed asyncio loop: each
  raises ``RuntimeError("Event loop is closed")``, reported through
  ``sys.unraisablehook`` as a traceback. The one warning line says it all.
  """

  def hook(unraisable: Any) -> None:
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
      return
    previous(unraisable)

  hook.msjax_drops_closed_loop = True
  return hook


def _quiet_after_damage() -> None:
  if not getattr(sys.unraisablehook, "msjax_drops_closed_loop", False):
    sys.unraisablehook = _drop_closed_loop_reports(sys.unraisablehook)


def _first_line(error: BaseException) -> str:
  for line in str(error).splitlines():
    if line.strip():
      return line.strip()[:200]
  return type(error).__name__


def _type_handlers() -> Any:
  """Orbax's handlers, jax.Array saved without replica-parallel slicing.

  Replica-parallel saving compiles one slicing program per parameter shape
  on the first save; each replicated array is written from its first
  replica instead.
  """
  registry = ocp.type_handlers.create_type_handler_registry(
    (int, ocp.type_handlers.ScalarHandler()),
    (float, ocp.type_handlers.ScalarHandler()),
    (bytes, ocp.type_handlers.ScalarHandler()),
    (np.number, ocp.type_handlers.ScalarHandler()),
    (np.ndarray, ocp.type_handlers.NumpyHandler()),
    (jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False)),
    (str, ocp.type_handlers.StringHandler()),
  )
  return registry


class _DropReadOnlyNotice(logging.Filter):
  """Drops orbax's "Given directory is read only" warning (we asked for it)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Given directory is read only")


@contextlib.contextmanager
def _without_read_only_notice():
  logger, notice = logging.getLogger("absl"), _DropReadOnlyNotice()
  logger.addFilter(notice)
  try:
    yield
  finally:
    logger.removeFilter(notice)


class Checkpointer:
  """A thin wrapper around ``ocp.CheckpointManager`` for one workdir.

  Attributes:
    manager: the orbax manager writing ``<workdir>/checkpoints``.
  """

  def __init__(
    self,
    workdir: str,
    section: ml_collections.ConfigDict,
    *,
    read_only: bool = False,
  ) -> None:
    """Opens (or creates) the checkpoint directory.

    Args:
      workdir: the run's directory.
      section: ``config.checkpoint`` (``every_steps``, ``keep``,
        ``async_save``).
      read_only: open without writing (evaluation).
    """
    directory = pathlib.Path(workdir).absolute() / "checkpoints"
    self.directory = directory
    self.read_only = read_only
    if read_only:
      options = ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0
      )
    else:
      options = ocp.CheckpointManagerOptions(
        max_to_keep=section.keep,
        save_interval_steps=1,
        enable_async_checkpointing=section.async_save,
        cleanup_tmp_directories=True,
      )
    quiet = (
      _without_read_only_notice() if read_only else contextlib.nullcontext()
    )
    with quiet:
      self.manager = ocp.CheckpointManager(
        directory,
        options=options,
        item_handlers={
          "state": ocp.PyTreeCheckpointHandler(
            type_handler_registry=_type_handlers()
          ),
          "progress": ocp.JsonCheckpointHandler(),
        },
      )

  def latest_step(self) -> int | None:
    """The last finished checkpoint's step, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: Any, progress: dict[str, Any]) -> None:
    """Starts saving ``state`` at ``step`` (asynchronously if configured)."""
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeSave(state),
        progress=ocp.args.JsonSave(progress),
      ),
      force=True,
    )

  def restore(
    self, abstract_state: Any, step: int | None = None
  ) -> tuple[Any, dict[str, Any]]:
    """Restores ``(state, progress)`` into the sharded abstract target."""
    step = self.latest_step() if step is None else step
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
          abstract_state,
          restore_args=ocp.checkpoint_utils.construct_restore_args(
            abstract_state
          ),
        ),
        progress=ocp.args.JsonRestore(),
      ),
    )
    return restored["state"], restored["progress"]

  def restore_raw(self, step: int | None = None) -> Any:
    """The saved state as host numpy arrays (no target or shardings needed)."""
    step = self.latest_step() if step is None else step
    metadata = self.manager.item_metadata(step)["state"]
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    restore_args = jax.tree.map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target
    )
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(target, restore_args=restore_args)
      ),
    )
    return jax.device_get(restored["state"])

  def all_steps(self) -> list[int]:
    """Every finished checkpoint's step, ascending."""
    return sorted(self.manager.all_steps())

  def _set_aside(self, step: int, error: BaseException) -> None:
    """Warns about a damaged checkpoint and (if writable) renames it."""
    _quiet_after_damage()
    where = self.directory / str(step)
    moved = ""
    if not self.read_only and where.exists():
      index = 0
      while (self.directory / f"{step}.corrupt-{index}").exists():
        index += 1
      target = self.directory / f"{step}.corrupt-{index}"
      where.rename(target)
      moved = f"; moved to {target}"
    warn(
      f"checkpoint step {step} in {self.directory} is damaged and was"
      f" skipped ({_first_line(error)}){moved}"
    )

  def _newest_intact(self, restore: Any) -> tuple[int, Any] | None:
    for step in reversed(self.all_steps()):
      try:
        return step, restore(step)
      except Exception as error:  # noqa: BLE001 (any damage: fall back)
        self._set_aside(step, error)
    if not self.read_only:
      self.manager.reload()
    return None

  def restore_intact(
    self, abstract_state: Any
  ) -> tuple[int, Any, dict[str, Any]] | None:
    """``(step, state, progress)`` of the newest checkpoint that reads back.

    Damaged newer checkpoints are reported and moved aside; None when there
    is no intact checkpoint (nor any checkpoint).
    """
    found = self._newest_intact(lambda step: self.restore(abstract_state, step))
    if found is None:
      return None
    if not self.read_only:
      self.manager.reload()
    step, (state, progress) = found
    return step, state, progress

  def restore_raw_intact(self) -> tuple[int, Any] | None:
    """``(step, host state)`` of the newest checkpoint that reads back."""
    return self._newest_intact(self.restore_raw)

  def wait(self) -> None:
    """Blocks until pending saves are on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()
