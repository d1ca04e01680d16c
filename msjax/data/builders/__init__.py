"""TFDS builders (array_record, no TensorFlow) for real sensing datasets.

``BUILDERS`` is the one explicit dict from ``config.data.source`` to the builder
class and the module whose ``default_config()`` gives ``config.data``.
"""

from msjax.data.builders import basic_motions, mod, pamap2, realworld, wesad
from msjax.data.builders._base import (
  WindowBuilder,
  options_name,
  prepare,
  read_split,
)
from msjax.data.loader import loader_options

__all__ = [
  "BUILDERS",
  "CONFIGS",
  "WindowBuilder",
  "builder_for",
  "num_classes",
  "options_name",
  "prepare",
  "read_split",
]

BUILDERS = {
  "basic_motions": basic_motions.BasicMotions,
  "mod_vehicle": mod.ModVehicle,
  "pamap2": pamap2.Pamap2,
  "realworld_har": realworld.RealWorldHar,
  "wesad": wesad.Wesad,
}
CONFIGS = {
  "basic_motions": basic_motions.default_config,
  "mod_vehicle": mod.default_config,
  "pamap2": pamap2.default_config,
  "realworld_har": realworld.default_config,
  "wesad": wesad.default_config,
}

#: config.data keys that select/locate data rather than change preparation.
_NOT_OPTIONS = (
  "source",
  "data_dir",
  "manual_dir",
  "modalities",
  *loader_options(),
)


def builder_for(data_config) -> WindowBuilder:
  """The (unprepared) builder a ``config.data`` section describes."""
  source = data_config.source
  if source not in BUILDERS:
    raise ValueError(
      f"config.data.source={source!r} is no builder; use one of "
      f"{sorted(BUILDERS)}."
    )
  options = {k: v for k, v in data_config.items() if k not in _NOT_OPTIONS}
  return BUILDERS[source](
    options=options,
    data_dir=data_config.data_dir,
    manual_dir=data_config.manual_dir,
  )


def num_classes(data_config) -> int:
  """Class count of the builder ``config.data`` names (nothing is prepared)."""
  return len(builder_for(data_config).class_names())
