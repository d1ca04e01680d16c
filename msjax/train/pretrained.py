"""Starting a run from another run's parameters (``train.init_from``).

InfoMAE stage 2 starts from the stage-1 encoders: the stage-1 workdir's latest
parameters are read (as saved, no target needed) and handed to the method's
``init_from_pretrained(params, pretrained_params, config)`` (by default every
leaf whose path and shape exist in both trees is copied).
"""

import pathlib
from collections.abc import Callable
from typing import Any

import ml_collections

from msjax.methods.interface import Method
from msjax.train.checkpoint import Checkpointer
from msjax.train.errors import ConfigError

_READ_SECTION = ml_collections.ConfigDict(
  dict(every_steps=1, keep=1, async_save=False)
)

__all__ = ["initializer", "load_params"]


def load_params(workdir: str) -> Any:
  """The parameters of the latest checkpoint in ``workdir`` (host numpy)."""
  if not (pathlib.Path(workdir) / "checkpoints").is_dir():
    raise ConfigError(f"train.init_from: no checkpoints in {workdir}")
  checkpointer = Checkpointer(workdir, _READ_SECTION, read_only=True)
  try:
    found = checkpointer.restore_raw_intact()  # skips damaged checkpoints
    if found is None:
      raise ConfigError(f"train.init_from: no checkpoint in {workdir}")
    return found[1]["params"]
  finally:
    checkpointer.close()


def initializer(
  method: Method, config: ml_collections.ConfigDict
) -> Callable[[Any], Any] | None:
  """The ``params -> params`` function for ``train.init_from`` (or None)."""
  if not config.train.init_from:
    return None
  pretrained = load_params(config.train.init_from)
  return lambda params: method.init_from_pretrained(params, pretrained, config)
