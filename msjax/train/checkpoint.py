"""Orbax checkpointing: periodic + final saves, keep-N, async, resume.

A checkpoint holds the train state (restored into an abstract target that
carries the shardings, so it comes back born sharded; ``restore_raw`` reads
it back as host numpy without a target) and a small JSON record
of the progress clock (seconds of training so far).
"""

import contextlib
import logging
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]


def _type_handlers() -> Any:
  """Orbax's handlers, jax.Array saved without replica-parallel slicing.

  Replica-parallel saving compiles one slicing program per parameter shape
  on the first save (seconds on a CPU); each replicated array is written
  from its first replica instead.
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

  def wait(self) -> None:
    """Blocks until pending saves are on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()
