"""Starting a run from another run's parameters (``train.init_from``).

InfoMAE stage 2 starts from the stage-1 encoders: the stage-1 workdir's latest
parameters are read (as saved, no target needed) and handed to the method's
optional ``init_from_pretrained(params, pretrained_params, config)``; without
that function, every leaf whose path and shape exist in both trees is copied.
"""

import pathlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.train.checkpoint import Checkpointer
from msjax.train.errors import ConfigError

_READ_SECTION = ml_collections.ConfigDict(
  dict(every_steps=1, keep=1, async_save=False)
)

__all__ = ["copy_matching", "initializer", "load_params"]


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


def copy_matching(params: Any, pretrained: Any) -> Any:
  """``params`` with every leaf of equal path and shape from ``pretrained``."""
  flat = {
    jax.tree_util.keystr(path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(pretrained)
  }

  def pick(path: Any, leaf: Any) -> Any:
    source = flat.get(jax.tree_util.keystr(path))
    if source is not None and np.shape(source) == np.shape(leaf):
      return jax.numpy.asarray(source, leaf.dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(pick, params)


def initializer(
  method: Any, config: ml_collections.ConfigDict
) -> Callable[[Any], Any] | None:
  """The ``params -> params`` function for ``train.init_from`` (or None)."""
  if not config.train.init_from:
    return None
  pretrained = load_params(config.train.init_from)
  if hasattr(method, "init_from_pretrained"):
    return lambda params: method.init_from_pretrained(
      params, pretrained, config
    )
  return lambda params: copy_matching(params, pretrained)
