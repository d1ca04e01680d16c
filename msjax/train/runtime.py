"""Process-level setup shared by training and evaluation.

Distributed initialisation, method lookup and data-source opening, each
turning user mistakes into one-line :mod:`msjax.train.errors`.
"""

from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from msjax.train.errors import ConfigError, DataError

__all__ = [
  "SourceFactory",
  "first_line",
  "get_method",
  "maybe_initialize_distributed",
  "open_source",
  "requires_paired_rows",
]

SourceFactory = Callable[[ml_collections.ConfigDict, str], Any]


def first_line(error: BaseException) -> str:
  """The first non-empty line of an exception's message (or its type)."""
  for line in str(error).splitlines():
    if line.strip():
      return line.strip()
  return type(error).__name__


def maybe_initialize_distributed(section: ml_collections.ConfigDict) -> None:
  """Calls ``jax.distributed.initialize`` when ``train.distributed`` asks.

  Args:
    section: ``config.train.distributed`` (``enabled``,
      ``coordinator_address``, ``num_processes``, ``process_id``,
      ``cpu_collectives``: the CPU collectives implementation, e.g. "gloo").
  """
  if not section.enabled or jax.distributed.is_initialized():
    return
  if section.cpu_collectives:
    jax.config.update(
      "jax_cpu_collectives_implementation", section.cpu_collectives
    )
  jax.distributed.initialize(
    coordinator_address=section.coordinator_address or None,
    num_processes=section.num_processes or None,
    process_id=section.process_id if section.num_processes else None,
  )


def get_method(name: str) -> Any:
  """The method module ``METHODS[name]``."""
  from msjax.methods import METHODS  # noqa: PLC0415 (methods load lazily)

  if name not in METHODS:
    raise ConfigError(f"unknown method {name!r}; known: {sorted(METHODS)}")
  return METHODS[name]


def requires_paired_rows(
  method: Any, config: ml_collections.ConfigDict
) -> bool:
  """The method's ``requires_paired_rows(config)`` (``True`` if absent)."""
  hook = getattr(method, "requires_paired_rows", None)
  return True if hook is None else bool(hook(config))


def open_source(
  data_config: ml_collections.ConfigDict,
  split: str,
  make_source: SourceFactory | None = None,
) -> Any:
  """Opens the data source a config names, failing with one line.

  Args:
    data_config: ``config.data``.
    split: e.g. "train" or "test".
    make_source: the factory (default ``msjax.data.make_source``).

  Returns:
    The source.

  Raises:
    DataError: the source cannot be opened (e.g. files not downloaded).
  """
  if make_source is None:
    from msjax.data import make_source  # noqa: PLC0415

  try:
    return make_source(data_config, split)
  except Exception as error:  # noqa: BLE001 (boundary to user data)
    raise DataError(
      f"data source {data_config.source!r} ({split}): {first_line(error)}"
    ) from error
