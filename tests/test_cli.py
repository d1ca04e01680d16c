"""The msjax command: argument parsing and one-line errors."""

import json
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


PROTOMM = str(ROOT / "experiments/protomm.py:smoke")


def _train(workdir, *extra, spec=PROTOMM):
  return cli.main(
    ["train", "--config", spec, "--workdir", str(workdir), *extra]
  )


def test_help_is_plain_text_and_names_overrides(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  assert "``" not in text and ":mod:" not in text
  assert "msjax train --config" in text and "msjax report DIR" in text
  with pytest.raises(SystemExit):
    cli.main(["train", "--help"])
  text = capsys.readouterr().out
  assert "--config.a.b=value" in text and "--restart" in text
  assert "``" not in text


def test_workdir_that_is_a_file_is_one_line(tmp_path, capsys):
  path = tmp_path / "afile"
  path.write_text("x")
  assert _train(path) == 2
  assert _error_line(capsys) == (
    f"msjax: error: --workdir {path} is a file, not a directory"
  )
  assert path.read_text() == "x"


@pytest.mark.parametrize(
  "override", ["train.log_every=0", "checkpoint.every_steps=0"]
)
def test_zero_step_counts_are_refused_before_compiling(
  tmp_path, capsys, override, monkeypatch
):
  from msjax.train import loop  # noqa: PLC0415

  monkeypatch.setattr(
    loop, "TrainSetup", lambda *a, **k: pytest.fail("compiled")
  )
  assert _train(tmp_path / "run", f"--config.{override}") == 2
  key = override.split("=")[0]
  assert _error_line(capsys) == (
    f"msjax: error: {key}=0 must be a positive integer"
  )
  assert not (tmp_path / "run").exists()


def _saved_run(workdir, spec=PROTOMM, overrides=()):
  from msjax.train import config_lib  # noqa: PLC0415

  config = config_lib.load_config(spec, overrides)
  config_lib.save_config(config, str(workdir))
  return (workdir / "config.json").read_bytes()


@pytest.mark.parametrize(
  ("spec", "overrides", "named"),
  [
    (
      str(ROOT / "experiments/promobal.py:smoke"),
      (),
      "method: 'protomm' -> 'promobal'",
    ),
    (PROTOMM, ("--config.model.embed_dim=32",), "model.embed_dim: 16 -> 32"),
  ],
)
def test_workdir_of_another_config_is_refused_untouched(
  tmp_path, capsys, spec, overrides, named
):
  saved = _saved_run(tmp_path)
  (tmp_path / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0}\n')
  listing = sorted(p.name for p in tmp_path.iterdir())
  assert _train(tmp_path, *overrides, spec=spec) == 2
  line = _error_line(capsys)
  assert line.startswith(f"msjax: error: {tmp_path} holds a run of another")
  assert named in line and "--restart" in line
  assert (tmp_path / "config.json").read_bytes() == saved
  assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_restart_moves_the_old_run_aside(tmp_path, capsys, monkeypatch):
  from msjax.train import loop  # noqa: PLC0415

  saved = _saved_run(tmp_path)
  (tmp_path / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0}\n')

  class Stop(Exception):
    pass

  def stop(*args, **kwargs):
    raise Stop

  monkeypatch.setattr(loop.runtime, "open_source", stop)
  with pytest.raises(Stop):
    _train(
      tmp_path,
      "--restart",
      spec=str(ROOT / "experiments/promobal.py:smoke"),
    )
  assert "moved to" in capsys.readouterr().err
  aside = tmp_path / "previous-0"
  assert (aside / "config.json").read_bytes() == saved
  assert (aside / "metrics.jsonl").exists()
  assert not (tmp_path / "config.json").exists()


def _npz_spec(tmp_path, **columns):
  import numpy as np  # noqa: PLC0415

  from msjax.data import npz  # noqa: PLC0415

  rng = np.random.default_rng(0)
  path = tmp_path / "data.npz"
  npz.save_npz(
    str(path),
    {"ppg": rng.normal(size=(32, 1, 64)).astype("float32")},
    subject=np.repeat(np.arange(4), 8),
    **columns,
  )
  return path


def test_string_labels_and_non_zip_npz_are_one_line(tmp_path, capsys):
  import numpy as np  # noqa: PLC0415

  from msjax.data import make_source, npz  # noqa: PLC0415
  from msjax.train import runtime  # noqa: PLC0415
  from msjax.train.errors import DataError  # noqa: PLC0415

  path = _npz_spec(tmp_path, label=np.array(["walk", "run"] * 16))
  config = npz.default_config(str(path), ("ppg",))
  with pytest.raises(DataError) as error:
    runtime.open_source(config, "train", make_source)
  assert str(error.value) == (
    f"data source 'npz' (train): labels 'label' in {path} are strings"
    " ('run', 'walk', ...); labels must be integers 0..C-1 (-1 ="
    " unlabelled): map each class name to an integer."
  )
  text = tmp_path / "notes.npz"
  text.write_text("a,b\n1,2\n")
  config.path = str(text)
  with pytest.raises(DataError) as error:
    runtime.open_source(config, "train", make_source)
  assert str(error.value) == (
    f"data source 'npz' (train): {text} is not an .npz archive (not a zip"
    " file); write it with numpy.savez or msjax.data.npz.save_npz."
  )


def test_report_on_a_missing_directory_exits_2(tmp_path, capsys):
  missing = tmp_path / "nothing"
  assert cli.main(["report", str(missing)]) == 2
  assert _error_line(capsys) == (
    f"msjax: error: {missing} is not a directory: nothing to report"
  )
  assert not missing.exists()
  assert cli.main(["report", str(tmp_path)]) == 2
  assert "is not a training workdir" in _error_line(capsys)
  assert not (tmp_path / "report").exists()


def test_unreadable_saved_config_is_one_line(tmp_path, capsys):
  (tmp_path / "config.json").write_text("{not json")
  assert _train(tmp_path) == 2
  line = _error_line(capsys)
  saved = tmp_path / "config.json"
  assert line.startswith(f"msjax: error: {saved} is unreadable")
  assert (tmp_path / "config.json").read_text() == "{not json"


def _npz_experiment(tmp_path, **columns):
  """An experiment file: the ProtoMM smoke config reading an npz file."""
  import numpy as np  # noqa: PLC0415

  from msjax.data import npz  # noqa: PLC0415

  rng = np.random.default_rng(0)
  data = tmp_path / "windows.npz"
  npz.save_npz(
    str(data),
    {
      "ppg": rng.normal(size=(48, 1, 128)).astype("float32"),
      "acc": rng.normal(size=(48, 3, 64)).astype("float32"),
    },
    subject=np.repeat(np.arange(4), 12),
    **columns,
  )
  spec = tmp_path / "npz_experiment.py"
  spec.write_text(
    "import importlib.util\n"
    "from msjax.data import npz\n"
    "def get_config(arg=None):\n"
    "  spec = importlib.util.spec_from_file_location(\n"
    f"    'protomm', {str(ROOT / 'experiments/protomm.py')!r})\n"
    "  module = importlib.util.module_from_spec(spec)\n"
    "  spec.loader.exec_module(module)\n"
    "  config = module.get_config('smoke')\n"
    "  with config.unlocked():\n"
    f"    config.data = npz.default_config({str(data)!r}, ('ppg', 'acc'))\n"
    "  return config\n"
  )
  return str(spec), data


def test_npz_string_labels_and_non_zip_exit_2(tmp_path, capsys):
  import numpy as np  # noqa: PLC0415

  spec, data = _npz_experiment(
    tmp_path, label=np.array(["sit", "walk", "run"] * 16)
  )
  assert _train(tmp_path / "run", spec=spec) == 2
  assert _error_line(capsys) == (
    f"msjax: error: data source 'npz' (train): labels 'label' in {data} are"
    " strings ('run', 'sit', 'walk', ...); labels must be integers 0..C-1"
    " (-1 = unlabelled): map each class name to an integer."
  )
  data.write_text("time,ppg\n0,1.0\n")
  assert _train(tmp_path / "run", spec=spec) == 2
  assert _error_line(capsys) == (
    f"msjax: error: data source 'npz' (train): {data} is not an .npz archive"
    " (not a zip file); write it with numpy.savez or msjax.data.npz.save_npz."
  )
  assert not (tmp_path / "run" / "config.json").exists()


def test_npz_without_labels_trains_and_skips_the_probe(tmp_path, capsys):
  spec, _ = _npz_experiment(tmp_path)
  workdir = tmp_path / "run"
  assert _train(workdir, "--config.train.mesh.data=1", spec=spec) == 0
  captured = capsys.readouterr()
  assert (
    "msjax: note: the training data has no labels: skipping the linear_probe"
    " evaluation at the end"
  ) in captured.err
  assert "Traceback" not in captured.err
  assert (workdir / "checkpoints" / "4").is_dir()
  assert not (workdir / "eval.json").exists()
  assert cli.main(["eval", "--workdir", str(workdir)]) == 2
  assert _error_line(capsys) == (
    "msjax: error: the train split of data source 'npz' has no labels:"
    " linear_probe needs labelled examples (set eval.protocol='none' for"
    " unlabelled data)"
  )


def test_dataset_location_may_change_on_resume():
  from msjax.train import config_lib, loop  # noqa: PLC0415

  spec = str(ROOT / "experiments/protomm_paper.py:smoke,dataset=pamap2")
  old = config_lib.load_config(spec).to_dict()
  new = config_lib.load_config(spec, ["data.data_dir=/elsewhere"]).to_dict()
  assert loop.config_differences(old, new) == []
  new = config_lib.load_config(spec, ["seed=3"]).to_dict()
  assert loop.config_differences(old, new) == ["seed: 0 -> 3"]


def test_a_run_saved_before_an_option_existed_resumes_at_its_default(
  tmp_path,
):
  from msjax.methods import infomae  # noqa: PLC0415
  from msjax.train import config_lib, loop  # noqa: PLC0415
  from msjax.train.errors import ConfigError  # noqa: PLC0415

  spec = str(ROOT / "experiments/infomae.py:smoke,stage=1")
  visible = config_lib.load_config(spec, ["model.swin.empty_tokens=visible"])
  saved = visible.to_dict()
  del saved["model"]["swin"]["empty_tokens"]  # a run older than the option
  defaults = loop.option_defaults(infomae.METHOD)
  assert defaults["model.swin.empty_tokens"] == "visible"
  assert "model.swin.embed_dim" not in defaults  # differs between sizes
  # The option at the default the old run ran with: no difference...
  assert loop.config_differences(saved, visible.to_dict(), defaults) == []
  # ...another value is one, and so is every missing key without a default.
  masked = config_lib.load_config(spec).to_dict()
  assert loop.config_differences(saved, masked, defaults) == [
    "model.swin.empty_tokens: 'visible' -> 'masked'"
  ]
  assert loop.config_differences(saved, visible.to_dict()) == [
    "model.swin.empty_tokens: '<absent>' -> 'visible'"
  ]
  # check_workdir applies it: the old run resumes; the new default does not.
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(saved))
  loop.check_workdir(visible, str(workdir))
  with pytest.raises(ConfigError, match="empty_tokens: 'visible' -> 'masked'"):
    loop.check_workdir(config_lib.load_config(spec), str(workdir))


def test_a_suite_run_saved_before_pair_share_and_alignment_resumes(tmp_path):
  from msjax.claims import suites  # noqa: PLC0415
  from msjax.train import loop  # noqa: PLC0415
  from msjax.train.errors import ConfigError  # noqa: PLC0415

  suite = suites.suite("infomae", "default", 0, "smoke")
  config = next(r for r in suite.runs if r.name == "infomae_0.05").config
  config = config.copy_and_resolve_references()
  config.data.pair_share = 0.0
  config.loss.alignment = "mse"
  saved = config.to_dict()
  for section, key in (
    ("data", "pair_share"),
    ("loss", "alignment"),
    ("loss", "align_tau"),
  ):
    del saved[section][key]
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(saved))
  loop.check_workdir(config, str(workdir))  # the old run resumes
  config.data.pair_share = 0.5
  with pytest.raises(ConfigError, match="pair_share: 0.0 -> 0.5"):
    loop.check_workdir(config, str(workdir))
