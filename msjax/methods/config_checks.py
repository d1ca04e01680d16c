"""Config checks that fail early, naming the problem in one line."""

from typing import Any

import ml_collections

__all__ = ["SIZES", "check_choice", "check_size", "modalities"]

#: The ``size`` argument of the methods' ``default_config``.
SIZES = ("tiny", "paper")


def check_choice(value: Any, choices: Any, name: str) -> None:
  """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def check_size(size: str) -> None:
  """Raises ``ValueError`` unless ``size`` is one of :data:`SIZES`."""
  check_choice(size, SIZES, "size")


def modalities(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """``config.data.modalities`` as a tuple, checked (non-empty, distinct)."""
  mods = tuple(config.data.modalities)
  if not mods or len(set(mods)) != len(mods):
    raise ValueError(
      f"config.data.modalities must be distinct names, got {mods}."
    )
  return mods
