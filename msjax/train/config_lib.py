"""Experiment configs: shared sections, argument parsing, loading, overrides.

An experiment file ``experiments/<name>.py`` defines ``get_config(arg)``; it
builds its ``data`` section from the data source's ``default_config``, its
``model``/``loss`` sections from the method's ``default_config`` and the rest
from the functions here, then calls :func:`make_config`. Configs are locked:
an unknown key, in the file or in a ``--config.a.b=value`` override, is a
one-line :class:`~msjax.train.errors.ConfigError`.
"""

from typing import Any

import ml_collections

from msjax.train.config_io import (
  apply_overrides,
  load_config,
  load_experiment,
  parse_value,
  restore_config,
  save_config,
)
from msjax.train.errors import ConfigError

__all__ = [
  "SECTIONS",
  "apply_overrides",
  "checkpoint_config",
  "eval_config",
  "load_config",
  "load_experiment",
  "make_config",
  "optim_config",
  "optim_group",
  "parse_arg",
  "restore_config",
  "save_config",
  "train_config",
  "with_sections",
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
      parsed[name] = parse_value(text, current)
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
  for ``jax.distributed.initialize``; "" and -1 leave them to JAX's cluster
  auto-detection, see docs/multihost.md; ``cpu_collectives`` for CPU runs),
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
        num_processes=-1,
        process_id=-1,
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


def with_sections(
  config: ml_collections.ConfigDict,
  sections: ml_collections.ConfigDict,
  keep: tuple[str, ...] = ("stage", "num_classes"),
) -> ml_collections.ConfigDict:
  """Copies ``sections``' ``model`` and ``loss`` keys into ``config``.

  Resizes an experiment to another ``method.default_config(size)`` (the
  benchmarks' paper-size models, the InfoMAE gradient sweep); the keys in
  ``keep`` (an InfoMAE stage, the data's class count) stay the
  experiment's. Modifies ``config`` in place and returns it.
  """
  with config.unlocked():
    for key in ("model", "loss"):
      for field, value in sections[key].items():
        if field not in keep:
          config[key][field] = value
  return config
