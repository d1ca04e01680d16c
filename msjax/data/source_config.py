r"""Switching an experiment's data source: the ``config.data`` of each source.

A ``config.data`` section is typed by its ``source``: the synthetic generator,
npz files and every TFDS builder each declare their own keys
(``DATA_CONFIGS``). Switching the source therefore replaces the section by the
new source's defaults (``switch_source``), carrying over what does not depend on
the source: the loader keys (``num_workers``, ``prefetch``) and, into a
source whose default names no modalities (npz), ``modalities``. Switching to
``"paired"`` wraps the current section as the base of a pair-ratio split
(``msjax.data.pairs.pairing_config``, ``pair_ratio`` 1.0 until set).

From the command line an override of ``data.source`` (or of a nested
``data.base.source``) does this switch before the other overrides apply, so
the new source's keys can be set in the same command::

    msjax train --config experiments/protomm.py --workdir DIR \
        --config.data.source=npz --config.data.path=/data/windows.npz
    msjax train --config experiments/infomae.py:stage=1 --workdir DIR \
        --config.data.source=paired --config.data.pair_ratio=0.1 \
        --config.data.subset=unpaired
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from msjax.data import npz, synthetic_config
from msjax.data.loader import loader_options
from msjax.data.pairs import pairing_config

__all__ = ["DATA_CONFIGS", "default_data_config", "switch_source"]


def _builder_configs() -> dict[str, Callable[[], ml_collections.ConfigDict]]:
  from msjax.data import builders  # noqa: PLC0415 (imports TFDS)

  return dict(builders.CONFIGS)


#: source -> its default ``config.data`` (the builders' are added on use).
DATA_CONFIGS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
  "synthetic": synthetic_config.default_config,
  "npz": npz.default_config,
}


def default_data_config(source: str) -> ml_collections.ConfigDict:
  """The default ``config.data`` of ``source`` (any name but "paired").

  Raises:
    ValueError: an unknown source (one line listing the known ones).
  """
  configs = {**DATA_CONFIGS, **_builder_configs()}
  if source not in configs:
    raise ValueError(
      f"data source {source!r} unknown; use one of "
      f"{sorted([*configs, 'paired'])}."
    )
  return configs[source]()


def switch_source(
  section: ml_collections.ConfigDict, source: str
) -> ml_collections.ConfigDict:
  """``section`` retyped for ``source`` (see module docstring).

  Args:
    section: the current ``config.data`` (or a nested ``base``).
    source: the new source name.

  Returns:
    ``section`` itself when its source is already ``source``, else a new
    unlocked section.
  """
  if section.source == source:
    return section
  if source == "paired":
    base = ml_collections.ConfigDict(section.to_dict())
    new = pairing_config(base, pair_ratio=1.0)
  else:
    new = default_data_config(source)
    if "modalities" in section and not tuple(new.modalities):
      new.modalities = tuple(section.modalities)
  for key in loader_options():
    if key in section:
      new[key] = section[key]
  return new
