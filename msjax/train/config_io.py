"""Loading, overriding, saving and restoring experiment configs.

``load_config("experiments/x.py:arg", ["a.b=value"])`` imports the file,
calls its ``get_config(arg)``, locks the result and applies the overrides;
the resolved config is saved as ``workdir/config.json`` so that ``msjax
eval`` needs no ``--config``.
"""

import ast
import importlib.util
import json
import pathlib
import types
from collections.abc import Sequence
from typing import Any

import ml_collections

from msjax.train.errors import ConfigError

__all__ = [
  "apply_overrides",
  "load_config",
  "load_experiment",
  "parse_value",
  "restore_config",
  "save_config",
]

_CONFIG_FILE = "config.json"


def parse_value(text: str, current: Any) -> Any:
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


def _switch_order(item: str) -> tuple[int, int]:
  """Sort key: ``data[.x...].source=`` items first, shallowest first."""
  path = item.removeprefix("--").removeprefix("config.").partition("=")[0]
  parts = path.split(".")
  switch = len(parts) >= 2 and parts[0] == "data" and parts[-1] == "source"
  return (0 if switch else 1, len(parts))


def _switch_data_source(
  config: ml_collections.ConfigDict, parents: list[str], source: str
) -> None:
  """Replaces the data section at ``parents`` by one typed for ``source``."""
  from msjax.data.source_config import switch_source  # noqa: PLC0415

  node, holder = config, None
  for part in parents:
    holder = node
    node = (
      node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    )
    if not isinstance(node, ml_collections.ConfigDict) or "source" not in node:
      raise ConfigError(f"unknown config key {'.'.join(parents)}.source")
  try:
    new = switch_source(node, source)
  except ValueError as error:
    raise ConfigError(
      f"bad value for {'.'.join(parents)}.source: {error}"
    ) from None
  if new is not node:
    with holder.unlocked():
      holder[parents[-1]] = new
    new.lock()


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

  An override of ``data.source`` (or ``data.base.source``) switches the data
  source: the section is replaced by the new source's defaults
  (:func:`msjax.data.source_config.switch_source`) before the other
  overrides apply, so they may set the new source's keys.
  """
  for item in sorted(overrides, key=_switch_order):  # source switches first
    text = item.removeprefix("--").removeprefix("config.")
    path, has_value, raw = text.partition("=")
    if not has_value:
      raise ConfigError(f"override {item!r} must look like a.b=value")
    *parents, leaf = path.split(".")
    if _switch_order(item)[0] == 0:
      _switch_data_source(config, parents, raw.strip())
      continue
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
      value = parse_value(raw, node[leaf])
      with node.unlocked():
        node[leaf] = value
    except (ValueError, TypeError) as error:
      raise ConfigError(f"bad value for {path}: {error}") from None
  return config


def load_experiment(path: pathlib.Path) -> types.ModuleType:
  """The experiment file ``path`` imported as a module (not cached).

  Raises:
    ConfigError: no such file.
  """
  if not path.is_file():
    raise ConfigError(f"config file {path} not found")
  module_spec = importlib.util.spec_from_file_location(
    f"msjax_experiment_{path.stem}", path
  )
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


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
  module = load_experiment(path)
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
