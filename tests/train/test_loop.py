"""The training loop end to end on the toy method (8 simulated devices)."""

import contextlib
import json
import logging
import shutil

import jax
import numpy as np
import pytest

from msjax.data import pipeline
from msjax.train import checkpoint, config_lib, evaluation, reporting
from msjax.train.checkpoint import Checkpointer
from msjax.train.errors import DataError, TrainingError
from msjax.train.loop import train_and_evaluate
from msjax.train.metrics import read_metrics
from msjax.train.optim import make_schedule
from tests.train import toy


def _run(config, workdir):
  return train_and_evaluate(
    config, str(workdir), method=toy.METHOD, make_source=toy.make_source
  )


def _final_state(workdir, config):
  checkpointer = Checkpointer(str(workdir), config.checkpoint, read_only=True)
  try:
    return checkpointer.latest_step(), checkpointer.restore_raw()
  finally:
    checkpointer.close()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  config = toy.get_config()
  with config.unlocked():
    config.checkpoint.keep = 10
  outcome = _run(config, workdir)
  return config, workdir, outcome


def test_metrics_checkpoints_and_eval(finished_run):
  config, workdir, outcome = finished_run
  records = read_metrics(str(workdir))
  assert [r["step"] for r in records] == [2, 4, 6]
  schedule = make_schedule(config.optim, config.train.total_steps)
  # lr/main is the mean over the logged window of the schedule at each step.
  assert records[1]["lr/main"] == pytest.approx(
    (float(schedule(2)) + float(schedule(3))) / 2, rel=1e-6
  )
  assert records[-1]["step_seen"] == pytest.approx(4.5)
  assert records[-1]["lr/discriminators"] == pytest.approx(0.01)
  assert all(np.isfinite(r["loss"]) for r in records)
  assert list(_final_state(workdir, config)[1]["step"].shape) == []
  assert _final_state(workdir, config)[0] == 6
  saved = json.loads((workdir / evaluation.EVAL_FILE).read_text())
  assert saved == json.loads(json.dumps(outcome["eval"]))
  assert set(saved["trained"]) == {"fused", "a", "b"}
  assert set(saved["random"]["fused"]) == {"accuracy", "macro_f1", "map"}
  assert sum(saved["diagnostics"]["prototype_usage"]["fused"]) == 64
  # The toy's align hook gives both modalities: one retrieval pair.
  for key in ("retrieval", "retrieval_random"):
    assert set(saved[key]) >= {"a|b"}
    assert 0.0 <= saved[key]["a|b"]["class_map"] <= 1.0
  assert saved["retrieval"]["chance"]["instance_r1"] == pytest.approx(1 / 64)
  text = evaluation.format_results(outcome["eval"])
  assert "cross-modal retrieval" in text and "a|b random" in text
  assert config_lib.restore_config(str(workdir)).to_dict() == config.to_dict()


def test_frozen_group_and_post_update(finished_run):
  config, workdir, _ = finished_run
  params = _final_state(workdir, config)[1]["params"]
  from msjax.train.step import init_variables  # noqa: PLC0415

  example = toy.make_source(config.data, "train").get(np.arange(16))
  initial = init_variables(toy.METHOD, config, example)["params"]
  np.testing.assert_array_equal(params["frozen"]["w"], initial["frozen"]["w"])
  assert not np.array_equal(
    params["discriminator"]["w"], initial["discriminator"]["w"]
  )
  np.testing.assert_allclose(
    np.linalg.norm(params["prototypes"], axis=-1), 1.0, rtol=1e-6
  )


def test_resume_equals_uninterrupted(finished_run, tmp_path):
  config, workdir, _ = finished_run
  resumed = tmp_path / "resumed"
  shutil.copytree(workdir / "checkpoints", resumed / "checkpoints")
  for step in (4, 6):  # as if the run had died right after step 2
    shutil.rmtree(resumed / "checkpoints" / str(step))
  with config.unlocked():
    config.eval.at_end = False
  _run(config, resumed)
  step, state = _final_state(resumed, config)
  assert step == 6
  _, expected = _final_state(workdir, config)
  assert jax.tree.structure(state) == jax.tree.structure(expected)
  for got, want in zip(
    jax.tree.leaves(state), jax.tree.leaves(expected), strict=True
  ):
    np.testing.assert_array_equal(got, want)


def test_report_writes_plots_and_summary(finished_run):
  _, workdir, _ = finished_run
  written = reporting.report(str(workdir))
  names = {p.name for p in written}
  assert {
    "loss.png",
    "learning_rate.png",
    "discriminators.png",
    "probe_accuracy.png",
    "prototype_usage.png",
    "summary.md",
  } <= names
  for path in written:
    if path.suffix == ".png":
      assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  summary = (workdir / "report" / "summary.md").read_text()
  assert "| fused | trained |" in summary and "| fused | random |" in summary


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = toy.get_config()
  with config.unlocked():
    config.loss.nan_step = 3  # the 4th update produces a NaN loss
    config.eval.at_end = False
  with pytest.raises(TrainingError) as error:
    _run(config, tmp_path)
  assert str(error.value) == (
    f"loss is nan at step 4; training stopped (last good checkpoint: step 2"
    f" in {tmp_path})"
  )
  assert _final_state(tmp_path, config)[0] == 2


def test_nan_in_batch_names_modality_and_sample(tmp_path):
  config = toy.get_config()
  with config.unlocked():
    config.data.nan_sample = 5
  step = next(
    s
    for s in range(100)
    if 5 in pipeline.global_batch_indices(64, batch_size=16, seed=0, step=s)
  )
  indices = pipeline.global_batch_indices(64, batch_size=16, seed=0, step=step)
  row = int(np.flatnonzero(indices == 5)[0])
  with pytest.raises(DataError) as error:
    _run(config, tmp_path)
  assert str(error.value) == (
    f"NaN in modality 'b', sample {row} of the global batch at step {step}"
  )


def test_shape_and_modality_mismatch(tmp_path):
  config = toy.get_config()
  with config.unlocked():
    config.model.input_length = 12
  with pytest.raises(DataError) as error:
    _run(config, tmp_path)
  assert str(error.value) == (
    "data shapes {'a': (2, 8), 'b': (2, 8)} do not fit the toy model config:"
    " model.input_length=12, got 8"
  )
  config = toy.get_config()
  with config.unlocked():
    config.data.modalities = ("a",)
  source = toy.ToySource(toy.get_config().data, "train")
  with pytest.raises(DataError, match=r"data has modalities \('a', 'b'\) but"):
    train_and_evaluate(
      config, str(tmp_path), method=toy.METHOD, make_source=lambda c, s: source
    )


def test_missing_dataset_is_one_line(tmp_path):
  config = toy.get_config()
  with config.unlocked():
    config.data.source = "wesad"
  with pytest.raises(DataError) as error:
    _run(config, tmp_path)
  assert str(error.value) == "data source 'wesad' (train): no data for wesad"


def test_read_only_open_drops_orbax_notice_only(
  finished_run, caplog, monkeypatch
):
  config, workdir, _ = finished_run

  def notices():
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      Checkpointer(str(workdir), config.checkpoint, read_only=True).close()
    return [r for r in caplog.records if "read only" in r.getMessage()]

  assert notices() == []
  assert not logging.getLogger("absl").filters  # the filter is removed again
  # Orbax does warn on every read-only open: the wrapper is what drops it.
  monkeypatch.setattr(
    checkpoint, "_without_read_only_notice", contextlib.nullcontext
  )
  assert notices()
