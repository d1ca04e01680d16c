"""Experiment configs: shared sections, argument parsing, loading, overrides.

An experiment file ``experiments/<name>.py`` defines ``get_config(arg)``; it
builds its ``data`` section from the data source's ``default_config``, its
``model``/``loss`` sections from the method's ``default_config`` and the rest
from the functions here, then calls :func:`make_config`. Configs are locked:
an unknown key, in the file or in a ``--config.a.b=value`` override, is a
one-line :class:`~msjax.train.errors.ConfigError`.
"""

import ast
import importlib.util
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections

from msjax.train.errors import ConfigError

__all__ = [
  "SECTIONS",
  "apply_overrides",
  "checkpoint_config",
  "eval_config",
  "load_config",
  "make_config",
  "optim_config",
  "optim_group",
  "parse_arg",
  "restore_config",
  "save_config",
  "train_config",
]

SECTIONS = (
  "seed",
  "method",
  "data",
  "model",
  "loss",
  "optim",
  "train",
  "checkpoint",
  "eval",
)
_CONFIG_FILE = "config.json"


def _parse_value(text: str, current: Any) -> Any:
  """Parses ``text`` into the type of ``current`` (the declared value)."""
  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes"):
      return True
    if lowered in ("0", "false", "no"):
      return False
    raise ValueError(f"expected a boolean, got {text!r}")
  if isinstance(current, str):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
    return value if isinstance(value, str) else text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if current is None or isinstance(current, tuple):
      value = text
    else:
      raise ValueError(f"cannot parse {text!r}") from None
  if isinstance(current, tuple) and not isinstance(value, tuple):
    value = tuple(value) if isinstance(value, list) else (value,)
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  return value


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses an experiment argument like ``"smoke,size=base"``.

  A bare name sets a boolean to True; ``key=value`` is parsed to the type of
  the default. Unknown names raise :class:`ConfigError`.

  Args:
    arg: the text after ``:`` in ``--config file.py:arg`` (None or "" = none).
    **defaults: every accepted name with its default value.

  Returns:
    A locked ConfigDict with one entry per default.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    name, has_value, text = item.partition("=")
    name = name.strip()
    if name not in defaults:
      raise ConfigError(
        f"unknown config argument {name!r}; accepted: {sorted(defaults)}"
      )
    current = defaults[name]
    if not has_value:
      if not isinstance(current, bool):
        raise ConfigError(f"config argument {name!r} needs a value")
      parsed[name] = True
      continue
    try:
      parsed[name] = _parse_value(text, current)
    except (ValueError, TypeError) as error:
      raise ConfigError(f"config argument {name}={text}: {error}") from None
  parsed.lock()
  return parsed


def optim_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The ``optim`` section: optimiser, schedule, clipping, weight decay.

  Keys: ``optimizer`` ("adamw", "adam", "sgd"), ``learning_rate`` (peak),
  ``schedule`` ("constant", "cosine", "step"), ``warmup_steps``,
  ``step_boundaries`` (steps where the rate is multiplied by
  ``step_factor``), ``end_factor`` (cosine floor as a fraction of the peak),
  ``momentum``/``nesterov`` (sgd), ``b1``/``b2``/``eps`` (adam),
  ``weight_decay`` (decoupled for adamw, added to the gradient for sgd/adam),
  ``grad_clip_norm`` (global norm, 0 = off) and ``groups`` (label -> a full
  section made with :func:`optim_group`, for the method's ``param_labels``).

  Args:
    **overrides: values replacing the defaults (unknown keys are rejected).

  Returns:
    The section.
  """
  section = ml_collections.ConfigDict(
    dict(
      optimizer="adamw",
      learning_rate=1e-3,
      schedule="cosine",
      warmup_steps=0,
      step_boundaries=(),
      step_factor=0.1,
      end_factor=0.0,
      momentum=0.9,
      nesterov=False,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.0,
      grad_clip_norm=0.0,
      groups=ml_collections.ConfigDict(),
    )
  )
  return _update(section, overrides, "optim")


def optim_group(
  base: ml_collections.ConfigDict, **overrides: Any
) -> ml_collections.ConfigDict:
  """A per-group optimiser section: a copy of ``base`` without ``groups``."""
  section = ml_collections.ConfigDict(base.to_dict())
  del section["groups"]
  return _update(section, overrides, "optim.groups")


def train_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The ``train`` section.

  Keys: ``batch_size`` (global), ``sequence_length`` (> 1: batches of
  ``batch_size / sequence_length`` runs of consecutive windows, laid out
  sequence-major, for temporal losses), ``total_steps``, ``log_every``, ``mesh``
  (``data`` devices, -1 = all left; ``fsdp`` devices; ``fsdp_min_size``,
  parameters smaller than this stay replicated), ``distributed``
  (``enabled``, ``coordinator_address``, ``num_processes``, ``process_id``
  for ``jax.distributed.initialize``; ``cpu_collectives`` for CPU runs),
  ``check_batches`` (reject NaN/inf inputs), ``init_from`` (a workdir
  whose parameters start this run, e.g. InfoMAE stage 2 from stage 1) and
  ``progress`` ("auto", "bar", "log", "off").

  Args:
    **overrides: values replacing the defaults.

  Returns:
    The section.
  """
  section = ml_collections.ConfigDict(
    dict(
      batch_size=64,
      sequence_length=1,
      total_steps=1000,
      log_every=50,
      mesh=dict(data=-1, fsdp=1, fsdp_min_size=2**16),
      distributed=dict(
        enabled=False,
        coordinator_address="",
        num_processes=1,
        process_id=0,
        cpu_collectives="gloo",
      ),
      check_batches=True,
      init_from="",
      progress="auto",
    )
  )
  return _update(section, overrides, "train")


def checkpoint_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The ``checkpoint`` section: ``every_steps``, ``keep``, ``async_save``."""
  section = ml_collections.ConfigDict(
    dict(every_steps=500, keep=3, async_save=True)
  )
  return _update(section, overrides, "checkpoint")


def eval_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The ``eval`` section: the protocol ``msjax eval`` runs.

  Keys: ``protocol`` ("linear_probe", "knn", "fine_tune" or "none"),
  ``at_end`` (evaluate when training ends), ``embeddings`` (keys of the
  method's ``embed`` output; empty = all), ``train_split``/``test_split``,
  ``max_examples`` (per split, 0 = all), ``batch_size``, ``probe_steps``
  (L-BFGS iterations), ``probe_l2``, ``knn_k``, ``knn_temperature``,
  ``fine_tune_steps``, ``fine_tune_learning_rate`` and ``random_baseline``
  (also evaluate a randomly initialised encoder).

  Args:
    **overrides: values replacing the defaults.

  Returns:
    The section.
  """
  section = ml_collections.ConfigDict(
    dict(
      protocol="linear_probe",
      at_end=True,
      embeddings=(),
      train_split="train",
      test_split="test",
      max_examples=0,
      batch_size=256,
      probe_steps=100,
      probe_l2=1e-3,
      knn_k=20,
      knn_temperature=0.07,
      fine_tune_steps=200,
      fine_tune_learning_rate=1e-4,
      random_baseline=True,
    )
  )
  return _update(section, overrides, "eval")


def _update(
  section: ml_collections.ConfigDict, overrides: dict[str, Any], name: str
) -> ml_collections.ConfigDict:
  for key, value in overrides.items():
    if key not in section:
      raise ConfigError(f"unknown key {name}.{key}")
    section[key] = value
  return section


def make_config(**sections: Any) -> ml_collections.ConfigDict:
  """Assembles and locks an experiment config from its top-level sections.

  Args:
    **sections: exactly the names in :data:`SECTIONS`.

  Returns:
    A locked ConfigDict.
  """
  missing = [name for name in SECTIONS if name not in sections]
  extra = [name for name in sections if name not in SECTIONS]
  if missing or extra:
    raise ConfigError(
      f"config sections: missing {missing}, unknown {extra}; expected"
      f" {list(SECTIONS)}"
    )
  config = ml_collections.ConfigDict({k: sections[k] for k in SECTIONS})
  config.lock()
  return config


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
  """Applies ``a.b=value`` overrides to a locked config (in place).

  Args:
    config: the config.
    overrides: items like ``"train.total_steps=10"`` (a leading
      ``--config.`` or ``config.`` is accepted and stripped).

  Returns:
    The same config.

  Raises:
    ConfigError: an unknown key, a missing ``=``, or a value of the wrong type.
  """
  for item in overrides:
    text = item.removeprefix("--").removeprefix("config.")
    path, has_value, raw = text.partition("=")
    if not has_value:
      raise ConfigError(f"override {item!r} must look like a.b=value")
    *parents, leaf = path.split(".")
    node = config
    for depth, part in enumerate(parents):
      node = (
        node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
      )
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(
          f"unknown config key {'.'.join(parents[: depth + 1])!r}"
          f" (in override {item!r})"
        )
    if leaf not in node:
      raise ConfigError(f"unknown config key {path!r} (in override {item!r})")
    try:
      value = _parse_value(raw, node[leaf])
      with node.unlocked():
        node[leaf] = value
    except (ValueError, TypeError) as error:
      raise ConfigError(f"bad value for {path}: {error}") from None
  return config


def load_config(
  spec: str, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
  """Loads ``path.py[:arg]``, calls its ``get_config(arg)``, applies overrides.

  Args:
    spec: the experiment file, optionally followed by ``:arg``.
    overrides: ``a.b=value`` items, see :func:`apply_overrides`.

  Returns:
    The locked config.
  """
  path_text, _, arg = spec.partition(":")
  path = pathlib.Path(path_text)
  if not path.is_file():
    raise ConfigError(f"config file {path} not found")
  module_spec = importlib.util.spec_from_file_location(
    f"msjax_experiment_{path.stem}", path
  )
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    config = module.get_config(arg or None)
  except (AttributeError, KeyError) as error:
    raise ConfigError(f"{path}: unknown config key: {error}") from None
  config.lock()
  return apply_overrides(config, overrides)


def _tuples(value: Any) -> Any:
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config to ``workdir/config.json``."""
  path = pathlib.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / _CONFIG_FILE).write_text(config.to_json(indent=2, sort_keys=True))


def restore_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads the config a run saved in ``workdir`` (lists become tuples)."""
  path = pathlib.Path(workdir) / _CONFIG_FILE
  if not path.is_file():
    raise ConfigError(f"{path} not found: is {workdir} a training workdir?")
  config = ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))
  config.lock()
  return config
