"""The msjax command: argument parsing and one-line errors."""

import pathlib

import pytest

from msjax import cli, host_memory

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_main_applies_the_host_malloc_variable(tmp_path, monkeypatch, capsys):
  seen = []
  monkeypatch.setattr(
    host_memory, "configure_from_env", lambda: seen.append(True) or {}
  )
  assert cli.main(["eval", "--workdir", str(tmp_path)]) == 2
  assert seen == [True]
  capsys.readouterr()
  monkeypatch.undo()
  monkeypatch.setenv(host_memory.ENV_VAR, "fastest")
  assert cli.main(["eval", "--workdir", str(tmp_path)]) == 2
  assert _error_line(capsys).startswith(
    "msjax: error: unknown host malloc level 'fastest'"
  )


def test_parse_args_splits_overrides():
  args, overrides = cli.parse_args(
    [
      "train",
      "--config",
      "experiments/protomm.py:smoke",
      "--config.train.total_steps=3",
      "--workdir",
      "/tmp/x",
      "--config.optim.learning_rate=0.1",
    ]
  )
  assert (args.command, args.config, args.workdir) == (
    "train",
    "experiments/protomm.py:smoke",
    "/tmp/x",
  )
  assert overrides == [
    "--config.train.total_steps=3",
    "--config.optim.learning_rate=0.1",
  ]
  args, overrides = cli.parse_args(["report", "/tmp/x"])
  assert (args.command, args.workdir, overrides) == ("report", "/tmp/x", [])
  with pytest.raises(SystemExit):
    cli.parse_args(["eval", "--workdir", "/tmp/x", "--config.seed=1"])


def _error_line(capsys):
  err = capsys.readouterr().err
  assert err.endswith("\n") and err.count("\n") == 1, err
  return err.strip()


def test_unknown_override_is_one_line(tmp_path, capsys):
  status = cli.main(
    [
      "train",
      "--config",
      str(ROOT / "experiments/protomm.py:smoke"),
      "--workdir",
      str(tmp_path),
      "--config.train.total_stepz=3",
    ]
  )
  assert status == 2
  assert _error_line(capsys) == (
    "msjax: error: unknown config key 'train.total_stepz' (in override"
    " '--config.train.total_stepz=3')"
  )


def test_missing_dataset_is_one_line(tmp_path, capsys):
  status = cli.main(
    [
      "train",
      "--config",
      str(ROOT / "experiments/protomm_paper.py:smoke,dataset=pamap2"),
      "--workdir",
      str(tmp_path / "run"),
      f"--config.data.data_dir={tmp_path}",
      f"--config.data.manual_dir={tmp_path / 'manual'}",
    ]
  )
  assert status == 2
  assert _error_line(capsys).startswith("msjax: error: data source 'pamap2'")


def test_eval_without_run_is_one_line(tmp_path, capsys):
  assert cli.main(["eval", "--workdir", str(tmp_path)]) == 2
  assert _error_line(capsys) == (
    f"msjax: error: {tmp_path}/config.json not found: is {tmp_path} a"
    " training workdir?"
  )
