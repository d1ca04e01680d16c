"""Training system: sharded loop, checkpoints, evaluation, metrics, reports.

The library entry points the ``msjax`` command wraps:

* :func:`train_and_evaluate` -- train (resuming from the workdir), evaluate.
* :func:`evaluate` -- the evaluation protocol the saved config names.
* :func:`report` -- PNG plots and a markdown summary of a workdir.
* :func:`load_config` -- ``path.py[:arg]`` plus ``a.b=value`` overrides.
"""

from msjax.train.config_lib import load_config, restore_config
from msjax.train.errors import ConfigError, DataError, MsjaxError, TrainingError
from msjax.train.evaluation import evaluate, format_results
from msjax.train.loop import train_and_evaluate
from msjax.train.reporting import report

__all__ = [
  "ConfigError",
  "DataError",
  "MsjaxError",
  "TrainingError",
  "evaluate",
  "format_results",
  "load_config",
  "report",
  "restore_config",
  "train_and_evaluate",
]
