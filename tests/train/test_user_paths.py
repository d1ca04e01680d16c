"""The loop's user paths on the toy method: unlabelled data, a NaN between
log boundaries, steps/s on short runs, an unusable distributed setup and the
discriminator plot."""

import math
import types

import jax
import numpy as np
import pytest

from msjax.train import config_lib, evaluation, reporting, runtime
from msjax.train.checkpoint import Checkpointer
from msjax.train.errors import ConfigError, DataError, TrainingError
from msjax.train.loop import train_and_evaluate
from msjax.train.metrics import read_metrics
from tests.train import toy


def _config(*overrides):
  config = toy.get_config()
  config_lib.apply_overrides(config, list(overrides))
  return config


def test_unlabelled_data_trains_and_skips_the_probe(tmp_path, capsys):
  def unlabelled(data_config, split):
    source = toy.make_source(data_config, split)
    source.labels = np.full_like(source.labels, -1)
    return source

  config = _config("eval.probe_steps=5")
  outcome = train_and_evaluate(
    config, str(tmp_path), method=toy.METHOD, make_source=unlabelled
  )
  assert outcome["eval"] is None
  assert outcome["step"] == 6
  err = capsys.readouterr().err
  assert (
    "msjax: note: the training data has no labels: skipping the linear_probe"
    " evaluation at the end"
  ) in err
  with pytest.raises(DataError) as error:
    evaluation.evaluate(
      str(tmp_path), config=config, method=toy.METHOD, make_source=unlabelled
    )
  assert str(error.value) == (
    "the train split of data source 'toy' has no labels: linear_probe needs"
    " labelled examples (set eval.protocol='none' for unlabelled data)"
  )


def test_nan_between_log_boundaries_names_its_step(tmp_path):
  # The 3rd update (step 3) is NaN; logs and saves happen at even steps.
  config = _config("loss.nan_step=2", "eval.at_end=false")
  with pytest.raises(TrainingError) as error:
    train_and_evaluate(
      config, str(tmp_path), method=toy.METHOD, make_source=toy.make_source
    )
  assert str(error.value) == (
    "loss is nan at step 3; training stopped (last good checkpoint: step 2"
    f" in {tmp_path})"
  )
  checkpointer = Checkpointer(str(tmp_path), config.checkpoint, read_only=True)
  try:
    assert checkpointer.all_steps() == [2]  # the NaN state was not saved
  finally:
    checkpointer.close()
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [2]


class _Clock:
  now = 1000.0

  def __call__(self):
    return self.now


def test_steps_per_second_waits_for_the_steps_and_skips_compiling(
  tmp_path, monkeypatch
):
  """A fake clock: dispatching a step takes 1 ms, compiling (waiting for the
  first step) 10 s, waiting for the logged steps to finish 1 s. Steps/s is
  the 3 steps after the first over the time they took on the device."""
  from msjax.train import loop  # noqa: PLC0415

  clock = _Clock()
  monkeypatch.setattr("msjax.train.progress.time.perf_counter", clock)

  class Setup(loop.TrainSetup):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      step_fn = self.step_fn

      def dispatch(state, batch, seed):
        clock.now += 0.001
        return step_fn(state, batch, seed)

      self.step_fn = dispatch

  def compile_wait(x):
    clock.now += 10.0
    return jax.block_until_ready(x)

  read = loop._read

  def device_wait(*args):
    clock.now += 1.0
    return read(*args)

  monkeypatch.setattr(loop, "TrainSetup", Setup)
  monkeypatch.setattr(
    loop,
    "jax",
    types.SimpleNamespace(
      **{n: getattr(jax, n) for n in dir(jax) if not n.startswith("__")}
      | {"block_until_ready": compile_wait}
    ),
  )
  monkeypatch.setattr(loop, "_read", device_wait)
  config = _config(
    "train.total_steps=4",
    "train.log_every=4",
    "checkpoint.every_steps=4",
    "eval.at_end=false",
  )
  train_and_evaluate(
    config, str(tmp_path), method=toy.METHOD, make_source=toy.make_source
  )
  (record,) = read_metrics(str(tmp_path))
  assert record["steps_per_s"] == pytest.approx(3 / 1.003, rel=1e-6)


def test_distributed_without_coordinator_or_cluster_is_one_line(monkeypatch):
  for name in list(__import__("os").environ):
    if name.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "TPU_")):
      monkeypatch.delenv(name)
  section = _config("train.distributed.enabled=true").train.distributed
  assert section.num_processes == -1 and section.process_id == -1
  with pytest.raises(ConfigError) as error:
    runtime.maybe_initialize_distributed(section, None)
  assert str(error.value).startswith(
    "train.distributed.enabled=true, but no coordinator was given and no"
    " cluster was detected"
  )
  assert not jax.distributed.is_initialized()
  config_lib.apply_overrides(section, ["coordinator_address=localhost:1234"])
  with pytest.raises(ConfigError, match="set train.distributed.num_processes"):
    runtime.maybe_initialize_distributed(section, None)


def test_discriminator_plot_has_one_axis_per_series(tmp_path, monkeypatch):
  names = [f"disc/d{i}" for i in range(10)] + ["disc/accuracy", "loss/disc"]
  lines = [
    {
      "step": s,
      "loss": 1.0,
      "lr/discriminators": 0.1,
      **dict.fromkeys(names, s),
    }
    for s in (1, 2)
  ]
  import json  # noqa: PLC0415

  (tmp_path / "metrics.jsonl").write_text(
    "".join(json.dumps(r) + "\n" for r in lines)
  )
  figures = {}
  close = reporting.plt.close

  def keep(figure):
    figures[figure.get_suptitle() or figure.axes[0].get_title()] = [
      a.get_title() for a in figure.axes if a.get_visible()
    ]
    close(figure)

  monkeypatch.setattr(reporting.plt, "close", keep)
  written = reporting.report(str(tmp_path))
  assert tmp_path / "report" / "discriminators.png" in written
  titles = figures["discriminators"]
  assert sorted(titles) == sorted(names)  # one axis each, no lr series
  assert not math.isnan(len(titles))
