"""``train_and_evaluate(config, workdir)``: the training loop.

Before anything is compiled or written, the config's step counts and the
workdir are checked: a workdir that is a file, or that holds a run of another
config (a different method, model, data, loss or optimiser), is refused with
one line naming the differing keys, unless ``restart=True`` (``msjax train
--restart``), which moves the old run aside to ``<workdir>/previous-<n>/``.
``config.json`` is written once the model has been built on the data.

Resumes automatically from the newest intact checkpoint in ``workdir`` (a
damaged newer one is moved aside with a warning); saves periodically and at
the end; logs metrics. Every step's loss is checked on device (a running
flag, read at log and checkpoint boundaries): a non-finite loss stops the run
naming the first bad step, before a checkpoint of the bad state is written.
Evaluates at the end; data without labels skips the evaluation with a note.
"""

import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from msjax.data import pairs
from msjax.methods import METHODS
from msjax.methods.interface import Method
from msjax.train import (
  config_lib,
  evaluation,
  pretrained,
  runtime,
  sharding,
  tensorboard,
)
from msjax.train.checkpoint import Checkpointer
from msjax.train.errors import ConfigError, DataError, TrainingError
from msjax.train.feed import BatchFeed
from msjax.train.metrics import MetricWriter
from msjax.train.progress import Chrono, Progress
from msjax.train.step import TrainSetup, init_variables, seed_array

__all__ = [
  "RUN_SECTIONS",
  "build_setup",
  "check_config",
  "check_workdir",
  "config_differences",
  "restart_workdir",
  "train_and_evaluate",
]

# Config sections that define a run: resuming under different values would
# restore a state of another model, or silently change what is trained.
# train/checkpoint/eval settings (steps, logging, evaluation) may change.
RUN_SECTIONS = ("method", "seed", "data", "model", "loss", "optim")
RUN_TRAIN_KEYS = ("batch_size", "sequence_length", "init_from")
# What a run writes into its workdir (moved aside by a restart).
RUN_FILES = (
  "config.json",
  "checkpoints",
  "metrics.jsonl",
  "tensorboard",
  "eval.json",
  "report",
)


def _global_example(feed: BatchFeed, host_batch: dict) -> dict:
  """Host batch reshaped to the global batch size (for shapes only)."""
  return jax.tree.map(
    lambda x: np.zeros(
      (feed.batch_size, *np.shape(x)[1:]), np.asarray(x).dtype
    ),
    host_batch,
  )


def build_setup(
  method: Method,
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
  example: dict,
  init_params: Callable[[Any], Any] | None = None,
  export_dir: str | None = None,
) -> TrainSetup:
  """Checks that data fits the model, then builds the jitted init and step.

  Raises:
    ConfigError: batches with unsynchronized rows (a ``"paired"`` key, from
      the "paired" source's ``mixed``/``unpaired`` subsets) for a method
      whose objective relates the modalities of each row.
    DataError: the model cannot be initialised on batches of this shape.
  """
  if "paired" in example and method.requires_paired_rows(config):
    # Only the "paired" source (msjax.data.pairs) emits the key.
    raise ConfigError(
      f"{config.method} relates the modalities of each row, but"
      f" data.subset={config.data.subset!r} gives rows whose modalities"
      " come from different windows: use data.subset='paired'"
    )
  try:
    jax.eval_shape(lambda: init_variables(method, config, example))
  except Exception as error:  # noqa: BLE001 (report shapes in one line)
    shapes = {k: np.shape(v)[1:] for k, v in example["signals"].items()}
    raise DataError(
      f"data shapes {shapes} do not fit the {config.method} model config:"
      f" {runtime.first_line(error)}"
    ) from error
  return TrainSetup(method, config, mesh, example, init_params, export_dir)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Rejects step counts the loop cannot run with, before compiling.

  Raises:
    ConfigError: a non-positive ``train.log_every``,
      ``checkpoint.every_steps``, ``checkpoint.keep`` or
      ``train.batch_size``, a negative ``train.total_steps``, or a
      ``seed`` outside ``[0, 2**31)``.
  """
  positive = {
    "train.log_every": config.train.log_every,
    "checkpoint.every_steps": config.checkpoint.every_steps,
    "checkpoint.keep": config.checkpoint.keep,
    "train.batch_size": config.train.batch_size,
  }
  for key, value in positive.items():
    if not isinstance(value, int) or value < 1:
      raise ConfigError(f"{key}={value!r} must be a positive integer")
  if config.train.total_steps < 0:
    raise ConfigError(
      f"train.total_steps={config.train.total_steps} must be >= 0"
    )
  try:
    seed_array(config.seed)  # an argument of the compiled programs: int32
  except ValueError as error:
    raise ConfigError(f"seed={config.seed!r}: {error}") from None


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flat(value, f"{prefix}{key}."))
    return out
  if isinstance(tree, list):
    tree = tuple(_flat_list(v) for v in tree)
  return {prefix[:-1]: tree}


def _flat_list(value: Any) -> Any:
  if isinstance(value, list):
    return tuple(_flat_list(v) for v in value)
  return value


# Where a dataset is stored, not which data: a moved dataset still resumes.
LOCATION_KEYS = ("data.data_dir", "data.manual_dir")
# How batches are read, not which: a run resumes with other reader settings
# (the batches are the same whatever they are, msjax.data.loader).
READER_KEYS = ("num_workers", "prefetch")


def _run_keys(config: dict) -> dict[str, Any]:
  flat = _flat({k: config.get(k) for k in RUN_SECTIONS})
  for key in LOCATION_KEYS:
    flat.pop(key, None)
  for key in list(flat):
    if key.startswith("data.") and key.rsplit(".", 1)[-1] in READER_KEYS:
      flat.pop(key)
  train = config.get("train", {})
  flat.update({f"train.{k}": train.get(k) for k in RUN_TRAIN_KEYS})
  return flat


def option_defaults(method: Method) -> dict[str, Any]:
  """``model.*`` and ``loss.*`` keys whose default is the same at every size.

  Options are added with the behaviour they generalise as their default
  (e.g. ``model.encoder_width = 0``, ``model.swin.empty_tokens =
  "visible"``), so a run saved before such a key existed ran with it.

  Args:
    method: the method (its ``default_config(size)`` for every size).

  Returns:
    Flattened keys (``"model.swin.empty_tokens"``) to their default.
  """
  flats = []
  for size in method.sizes:
    sections = method.default_config(size)
    flats.append(_flat({k: sections[k].to_dict() for k in ("model", "loss")}))
  first, *rest = flats
  return {
    key: value
    for key, value in first.items()
    if all(key in other and other[key] == value for other in rest)
  }


def config_differences(
  saved: dict, config: dict, absent_as: dict[str, Any] | None = None
) -> list[str]:
  """``key: old -> new`` for every run-defining key that differs.

  The method first, then model, data, train, seed, optimiser and loss keys.

  Args:
    saved: the config a run was started with (``config.json``).
    config: the config asked for now.
    absent_as: values that keys missing from ``saved`` stand for (keys
      added since that run: :func:`option_defaults`); a missing key whose
      new value is its entry here is no difference.
  """
  old, new = _run_keys(saved), _run_keys(config)
  for key, value in (absent_as or {}).items():
    if key not in old and key in new:
      old[key] = value
  order = ("method", "model.", "data.", "train.", "seed", "optim.", "loss.")

  def rank(key: str) -> tuple[int, str]:
    ranks = [i for i, prefix in enumerate(order) if key.startswith(prefix)]
    return (ranks[0] if ranks else len(order), key)

  lines = []
  for key in sorted(set(old) | set(new), key=rank):
    if old.get(key, "<absent>") != new.get(key, "<absent>"):
      lines.append(
        f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}"
      )
  return lines


def _move_aside(workdir: pathlib.Path) -> pathlib.Path:
  index = 0
  while (workdir / f"previous-{index}").exists():
    index += 1
  target = workdir / f"previous-{index}"
  target.mkdir()
  for name in RUN_FILES:
    if (workdir / name).exists():
      (workdir / name).rename(target / name)
  return target


def check_workdir(
  config: ml_collections.ConfigDict, workdir: str, *, restart: bool = False
) -> None:
  """Refuses a workdir that is a file or holds a run of another config.

  Args:
    config: the experiment config.
    workdir: the run directory.
    restart: the user starts over (:func:`restart_workdir`): any config is
      accepted.

  Raises:
    ConfigError: the workdir is not a directory, or its ``config.json`` was
      written by a config whose run-defining keys differ.
  """
  path = pathlib.Path(workdir)
  if path.exists() and not path.is_dir():
    raise ConfigError(f"--workdir {workdir} is a file, not a directory")
  if restart or not (path / "config.json").is_file():
    return
  try:
    saved = config_lib.restore_config(workdir).to_dict()
  except (ValueError, TypeError) as error:
    raise ConfigError(
      f"{path / 'config.json'} is unreadable ({runtime.first_line(error)}):"
      " use another --workdir, or pass --restart to move that run aside"
    ) from None
  absent_as = {}
  if config.get("method") in METHODS and saved.get("method") == config.method:
    absent_as = {
      **option_defaults(METHODS[config.method]),
      **pairs.OPTION_DEFAULTS,
    }
  differences = config_differences(saved, config.to_dict(), absent_as)
  if differences:
    shown = "; ".join(differences[:6])
    more = f" (and {len(differences) - 6} more)" if len(differences) > 6 else ""
    raise ConfigError(
      f"{workdir} holds a run of another config ({shown}{more}): use another"
      " --workdir, or pass --restart to move that run aside and start over"
    )


def restart_workdir(workdir: str) -> None:
  """Moves a previous run in ``workdir`` to ``<workdir>/previous-<n>/``.

  Process 0 moves; every process waits for it. Nothing is deleted.
  """
  path = pathlib.Path(workdir)
  if jax.process_index() == 0 and any(
    (path / name).exists() for name in RUN_FILES
  ):
    target = _move_aside(path)
    print(
      f"msjax: --restart: the previous run in {workdir} was moved to {target}",
      file=sys.stderr,
      flush=True,
    )
  runtime.sync_processes("msjax restart")


def _accumulate_impl(acc: dict, metrics: dict, done: jax.Array) -> dict:
  """Adds one step's metrics; remembers the first step with a bad loss."""
  loss = metrics["loss"]
  first = (acc["bad_step"] < 0) & ~jnp.isfinite(loss)
  return {
    "sums": jax.tree.map(jnp.add, acc["sums"], metrics),
    "count": acc["count"] + 1,
    "bad_step": jnp.where(first, done, acc["bad_step"]).astype(jnp.int32),
    "bad_loss": jnp.where(first, loss, acc["bad_loss"]).astype(jnp.float32),
  }


def _first_impl(metrics: dict, done: jax.Array) -> dict:
  empty = {
    "sums": jax.tree.map(jnp.zeros_like, metrics),
    "count": jnp.zeros((), jnp.int32),
    "bad_step": jnp.full((), -1, jnp.int32),
    "bad_loss": jnp.zeros((), jnp.float32),
  }
  return _accumulate_impl(empty, metrics, done)


# One small program per step, on device: the running sums of the metrics and
# the first step whose loss is not finite (read only at log/save boundaries).
_accumulate = jax.jit(_accumulate_impl)
_first_accumulate = jax.jit(_first_impl)


def _read(acc: dict, last_saved: int | None, workdir: str) -> dict[str, float]:
  """Fetches the accumulator (waits for the steps); raises on a bad loss."""
  host = jax.device_get(acc)
  bad = int(host["bad_step"])
  if bad >= 0:
    kept = (
      "no checkpoint was saved"
      if last_saved is None
      else f"last good checkpoint: step {last_saved} in {workdir}"
    )
    raise TrainingError(
      f"loss is {float(host['bad_loss'])} at step {bad}; training stopped"
      f" ({kept})"
    )
  count = max(int(host["count"]), 1)
  return {k: float(v) / count for k, v in host["sums"].items()}


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  method: Method | None = None,
  make_source: runtime.SourceFactory | None = None,
  restart: bool = False,
  step_export_dir: str | None = None,
) -> dict[str, Any]:
  """Trains (resuming from ``workdir``) and evaluates at the end.

  Args:
    config: the experiment config (saved as ``workdir/config.json``).
    workdir: the run directory.
    method: the method (default ``METHODS[config.method]``).
    make_source: the data factory (default ``msjax.data.make_source``).
    restart: start over: move a previous run in ``workdir`` aside instead of
      resuming it (or refusing it when its config differs).
    step_export_dir: where the traced step is stored and found again
      (:mod:`msjax.train.step_export`; ``msjax train`` passes
      ``<compile cache>/msjax-steps``); ``None``: traced every run.

  Returns:
    ``{"step", "metrics" (last logged means), "eval" (or None)}``.

  Raises:
    ConfigError, DataError, TrainingError: one-line user errors.
  """
  check_config(config)
  check_workdir(config, workdir, restart=restart)  # before writing anything
  runtime.maybe_initialize_distributed(config.train.distributed, workdir)
  if restart:
    restart_workdir(workdir)
  method = runtime.get_method(config.method) if method is None else method
  is_main = jax.process_index() == 0
  source = runtime.open_source(config.data, "train", make_source)
  mesh = sharding.make_mesh(config.train.mesh)
  feed = BatchFeed(source, config, mesh)
  evaluate_at_end = config.eval.at_end and config.eval.protocol != "none"
  if evaluate_at_end and not runtime.has_labels(source):
    evaluate_at_end = False
    if is_main:
      print(
        f"msjax: note: the training data has no labels: skipping the"
        f" {config.eval.protocol} evaluation at the end",
        file=sys.stderr,
        flush=True,
      )
  first_host_batch = feed.host_batch(0)
  init_params = pretrained.initializer(method, config)
  setup = build_setup(
    method,
    config,
    mesh,
    _global_example(feed, first_host_batch),
    init_params,
    step_export_dir,
  )
  if is_main:
    config_lib.save_config(config, workdir)
  checkpointer = Checkpointer(workdir, config.checkpoint)
  restored = checkpointer.restore_intact(setup.abstract_state)
  if restored is None:
    state, progress_record = setup.init_fn(setup.seed), {"elapsed_s": 0.0}
    start = 0
  else:
    start, state, progress_record = restored
  if is_main:
    tensorboard.drop_events_after(pathlib.Path(workdir) / "tensorboard", start)
  total = config.train.total_steps
  writer = MetricWriter(workdir)
  chrono = Chrono(progress_record["elapsed_s"])
  progress = Progress(
    total_steps=total,
    start_step=start,
    mode=config.train.progress,
    enabled=is_main,
  )
  last_saved = start if start > 0 else None
  logged: dict[str, float] = {}
  acc = None
  try:
    if start < total:
      progress.message(
        f"{'resuming at' if start else 'starting'} step {start}; compiling"
        " the train step"
      )
    for step in range(start, total):
      batch = feed(step) if step != 0 else feed.global_batch(first_host_batch)
      state, metrics = setup.step_fn(state, batch, setup.seed)
      done = step + 1
      acc = (
        _first_accumulate(metrics, done)
        if acc is None
        else _accumulate(acc, metrics, done)
      )
      if step == start:
        jax.block_until_ready(acc)  # compiled: start the clock now
        chrono.resume()
      else:
        chrono.tick()
      save = done % config.checkpoint.every_steps == 0 or done == total
      if done % config.train.log_every == 0 or save:
        logged = _read(acc, last_saved, workdir)  # waits for the steps
        chrono.pause()
        acc = None
        rate = chrono.steps_per_second()
        if rate > 0:
          logged["steps_per_s"] = rate
        writer.write_scalars(done, logged)
        progress.update(done, logged, chrono)
        if save:
          checkpointer.save(done, state, {"elapsed_s": chrono.elapsed})
          last_saved = done
        chrono.resume()
    chrono.pause()
  finally:
    feed.close()
    progress.close()
    writer.close()
    checkpointer.close()
  results = None
  if evaluate_at_end:
    results = evaluation.evaluate(
      workdir, config=config, method=method, make_source=make_source
    )
    if is_main:
      tensorboard.write_eval(pathlib.Path(workdir) / "tensorboard", results)
  return {"step": total, "metrics": logged, "eval": results}
