"""The generator settings every claim is checked at (docs/claims.md).

Written down before any method was tuned: ``default`` is the built-in
synthetic generator unchanged; ``skewed`` makes the motion stream carry the
shared factor strongly and the pulse weakly. Claims must hold at both.
"""

import ml_collections

from msjax.data import synthetic

__all__ = ["SETTINGS", "data_config"]

#: name -> the ``config.data`` overrides of that setting.
SETTINGS: dict[str, dict] = {
  "default": {},
  "skewed": {"dominance": {"ppg": 0.5, "acc": 1.5}},
}


def data_config(
  setting: str, *, task: str = "shared"
) -> ml_collections.ConfigDict:
  """The synthetic ``config.data`` of a setting.

  Args:
    setting: a key of :data:`SETTINGS`.
    task: the label task (a key of ``synthetic.TASKS``).

  Returns:
    ``synthetic.default_config()`` with the setting's overrides.

  Raises:
    ValueError: unknown setting.
  """
  if setting not in SETTINGS:
    raise ValueError(
      f"setting must be one of {tuple(SETTINGS)}, got {setting!r}."
    )
  data = synthetic.default_config()
  for key, value in SETTINGS[setting].items():
    data[key] = value
  data.task = task
  return data
