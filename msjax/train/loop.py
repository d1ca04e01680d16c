"""``train_and_evaluate(config, workdir)``: the training loop.

Resumes automatically from the latest checkpoint in ``workdir``; saves
periodically and at the end; logs metrics; stops on a non-finite loss naming
the step (the last good checkpoint stays the latest); evaluates at the end.
"""

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.train import config_lib, evaluation, pretrained, runtime, sharding
from msjax.train.checkpoint import Checkpointer
from msjax.train.errors import ConfigError, DataError, TrainingError
from msjax.train.feed import BatchFeed
from msjax.train.metrics import MetricWriter
from msjax.train.progress import Chrono, Progress
from msjax.train.step import TrainSetup, init_variables

__all__ = ["build_setup", "train_and_evaluate"]


def _global_example(feed: BatchFeed, host_batch: dict) -> dict:
  """Host batch reshaped to the global batch size (for shapes only)."""
  return jax.tree.map(
    lambda x: np.zeros(
      (feed.batch_size, *np.shape(x)[1:]), np.asarray(x).dtype
    ),
    host_batch,
  )


def build_setup(
  method: Any,
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
  example: dict,
  init_params: Callable[[Any], Any] | None = None,
) -> TrainSetup:
  """Checks that data fits the model, then builds the jitted init and step.

  Raises:
    ConfigError: batches with unsynchronized rows (a ``"paired"`` key, from
      the "paired" source's ``mixed``/``unpaired`` subsets) for a method
      whose objective relates the modalities of each row.
    DataError: the model cannot be initialised on batches of this shape.
  """
  if "paired" in example and runtime.requires_paired_rows(method, config):
    subset = config.data.get("subset", "mixed")
    raise ConfigError(
      f"{config.method} relates the modalities of each row, but"
      f" data.subset={subset!r} gives rows whose modalities come from"
      " different windows: use data.subset='paired'"
    )
  try:
    jax.eval_shape(lambda: init_variables(method, config, example))
  except Exception as error:  # noqa: BLE001 (report shapes in one line)
    shapes = {k: np.shape(v)[1:] for k, v in example["signals"].items()}
    raise DataError(
      f"data shapes {shapes} do not fit the {config.method} model config:"
      f" {runtime.first_line(error)}"
    ) from error
  return TrainSetup(method, config, mesh, example, init_params)


def _check_finite(
  pending: list[tuple[int, dict]], last_saved: int | None, workdir: str
) -> None:
  for step, metrics in pending:
    loss = float(metrics["loss"])
    if not np.isfinite(loss):
      kept = (
        "no checkpoint was saved"
        if last_saved is None
        else f"last good checkpoint: step {last_saved} in {workdir}"
      )
      raise TrainingError(
        f"loss is {loss} at step {step}; training stopped ({kept})"
      )


def _mean_metrics(pending: list[tuple[int, dict]]) -> dict[str, float]:
  keys = pending[-1][1].keys()
  return {
    k: float(np.mean([float(m[k]) for _, m in pending if k in m])) for k in keys
  }


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  method: Any = None,
  make_source: runtime.SourceFactory | None = None,
) -> dict[str, Any]:
  """Trains (resuming from ``workdir``) and evaluates at the end.

  Args:
    config: the experiment config (saved as ``workdir/config.json``).
    workdir: the run directory.
    method: the method module (default ``METHODS[config.method]``).
    make_source: the data factory (default ``msjax.data.make_source``).

  Returns:
    ``{"step", "metrics" (last logged means), "eval" (or None)}``.

  Raises:
    ConfigError, DataError, TrainingError: one-line user errors.
  """
  runtime.maybe_initialize_distributed(config.train.distributed)
  method = runtime.get_method(config.method) if method is None else method
  is_main = jax.process_index() == 0
  if is_main:
    config_lib.save_config(config, workdir)
  source = runtime.open_source(config.data, "train", make_source)
  mesh = sharding.make_mesh(config.train.mesh)
  feed = BatchFeed(source, config, mesh)
  first_host_batch = feed.host_batch(0)
  init_params = pretrained.initializer(method, config)
  setup = build_setup(
    method, config, mesh, _global_example(feed, first_host_batch), init_params
  )
  checkpointer = Checkpointer(workdir, config.checkpoint)
  start = checkpointer.latest_step()
  if start is None:
    state, progress_record = setup.init_fn(), {"elapsed_s": 0.0}
    start = 0
  else:
    state, progress_record = checkpointer.restore(setup.abstract_state, start)
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
  pending: list[tuple[int, dict]] = []
  logged: dict[str, float] = {}
  try:
    if start < total:
      progress.message(
        f"{'resuming at' if start else 'starting'} step {start}; compiling"
        " the train step"
      )
    for step in range(start, total):
      batch = feed(step) if step != 0 else feed.global_batch(first_host_batch)
      state, metrics = setup.step_fn(state, batch)
      pending.append((step + 1, metrics))
      if step == start:
        jax.block_until_ready(metrics)  # compiled: start the clock now
        chrono.resume()
        continue
      chrono.tick()
      done = step + 1
      save = done % config.checkpoint.every_steps == 0 or done == total
      if done % config.train.log_every == 0 or save:
        chrono.pause()
        pending = jax.device_get(pending)
        _check_finite(pending, last_saved, workdir)
        logged = _mean_metrics(pending)
        logged["steps_per_s"] = chrono.steps_per_second()
        writer.write_scalars(done, logged)
        progress.update(done, logged, chrono)
        pending = []
        if save:
          checkpointer.save(done, state, {"elapsed_s": chrono.elapsed})
          last_saved = done
        chrono.resume()
    chrono.pause()
    if pending:  # a run of one step
      pending = jax.device_get(pending)
      _check_finite(pending, last_saved, workdir)
      logged = _mean_metrics(pending)
      writer.write_scalars(pending[-1][0], logged)
      checkpointer.save(pending[-1][0], state, {"elapsed_s": chrono.elapsed})
  finally:
    progress.close()
    writer.close()
    checkpointer.close()
  results = None
  if config.eval.at_end and config.eval.protocol != "none":
    results = evaluation.evaluate(
      workdir, config=config, method=method, make_source=make_source
    )
  return {"step": total, "metrics": logged, "eval": results}
