"""A damaged newest checkpoint: resume from the newest intact one, bit-exactly.

The damaged checkpoint is moved aside (``<step>.corrupt-<n>``), never deleted,
and one warning line names the skipped step.
"""

import pathlib

import jax
import numpy as np
import pytest

from msjax.train import config_lib, evaluation
from msjax.train.checkpoint import Checkpointer
from msjax.train.loop import train_and_evaluate
from tests.train import toy

OVERRIDES = ["eval.at_end=false", "checkpoint.keep=3"]


def _config(total_steps):
  config = toy.get_config()
  config_lib.apply_overrides(
    config, [*OVERRIDES, f"train.total_steps={total_steps}"]
  )
  return config


def _run(config, workdir):
  return train_and_evaluate(
    config, str(workdir), method=toy.METHOD, make_source=toy.make_source
  )


def _params(workdir, config):
  checkpointer = Checkpointer(str(workdir), config.checkpoint, read_only=True)
  try:
    return checkpointer.latest_step(), checkpointer.restore_raw()["params"]
  finally:
    checkpointer.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("whole")
  config = _config(6)
  _run(config, workdir)
  return _params(workdir, config)


def _truncate_array_files(step_dir: pathlib.Path) -> None:
  files = [p for p in (step_dir / "state").rglob("d/*") if p.is_file()]
  assert files
  for path in files:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty_metadata(step_dir: pathlib.Path) -> None:
  path = step_dir / "state" / "_METADATA"
  assert path.stat().st_size > 0
  path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate_array_files, _empty_metadata])
def test_resume_skips_a_damaged_newest_checkpoint(
  tmp_path, uninterrupted, damage, capsys
):
  _run(_config(4), tmp_path)  # checkpoints at steps 2 and 4
  checkpoints = tmp_path / "checkpoints"
  damage(checkpoints / "4")
  before = {
    p.relative_to(checkpoints / "4"): p.read_bytes()
    for p in (checkpoints / "4").rglob("*")
    if p.is_file()
  }
  capsys.readouterr()
  _run(_config(6), tmp_path)  # falls back to step 2, trains 3..6
  err = capsys.readouterr().err
  warnings = [line for line in err.splitlines() if "warning" in line]
  assert len(warnings) == 1, err
  assert "Traceback" not in err and "Event loop is closed" not in err
  assert warnings[0].startswith(
    f"msjax: warning: checkpoint step 4 in {checkpoints} is damaged and was"
    " skipped ("
  )
  assert warnings[0].endswith(f"moved to {checkpoints / '4.corrupt-0'}")
  assert "resuming at step 2;" in err
  # Kept aside, byte for byte.
  aside = checkpoints / "4.corrupt-0"
  kept = {
    p.relative_to(aside): p.read_bytes()
    for p in aside.rglob("*")
    if p.is_file()
  }
  assert kept == before
  step, params = _params(tmp_path, _config(6))
  expected_step, expected = uninterrupted
  assert step == expected_step == 6
  for got, want in zip(
    jax.tree.leaves(params), jax.tree.leaves(expected), strict=True
  ):
    np.testing.assert_array_equal(got, want)


def test_evaluation_reads_the_newest_intact_checkpoint(tmp_path, capsys):
  config = _config(4)
  _run(config, tmp_path)
  _empty_metadata(tmp_path / "checkpoints" / "4")
  capsys.readouterr()
  with config.unlocked():
    config.eval.probe_steps = 5
    config.eval.random_baseline = False
  results = evaluation.evaluate(
    str(tmp_path), config=config, method=toy.METHOD, make_source=toy.make_source
  )
  assert results["step"] == 2
  err = capsys.readouterr().err
  assert "msjax: warning: checkpoint step 4" in err
  # Evaluation opens the checkpoints read-only: nothing is moved.
  assert (tmp_path / "checkpoints" / "4").is_dir()


def test_no_intact_checkpoint_starts_over(tmp_path, capsys):
  _run(_config(2), tmp_path)
  _empty_metadata(tmp_path / "checkpoints" / "2")
  capsys.readouterr()
  _run(_config(2), tmp_path)
  err = capsys.readouterr().err
  assert "checkpoint step 2" in err and "starting step 0;" in err
  assert (tmp_path / "checkpoints" / "2.corrupt-0").is_dir()
  assert _params(tmp_path, _config(2))[0] == 2
