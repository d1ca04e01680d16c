"""Config parsing, overrides, locking and round trips."""

import pathlib

import ml_collections
import pytest

from msjax.train import config_lib
from msjax.train.errors import ConfigError
from tests.train import toy


def test_parse_arg_types_and_unknown():
  arg = config_lib.parse_arg(
    "smoke,size=base,steps=3", smoke=False, size="tiny", steps=10
  )
  assert (arg.smoke, arg.size, arg.steps) == (True, "base", 3)
  assert config_lib.parse_arg(None, smoke=False).smoke is False
  with pytest.raises(ConfigError, match="unknown config argument 'smok'"):
    config_lib.parse_arg("smok", smoke=False)


def test_overrides_typed_and_unknown_rejected():
  config = toy.get_config()
  config_lib.apply_overrides(
    config,
    [
      "--config.train.total_steps=9",
      "optim.learning_rate=1",
      "data.modalities=('b','a')",
      "train.progress=off",
      "train.check_batches=false",
    ],
  )
  assert config.train.total_steps == 9
  assert config.optim.learning_rate == 1.0 and isinstance(
    config.optim.learning_rate, float
  )
  assert config.data.modalities == ("b", "a")
  assert config.train.progress == "off" and config.train.check_batches is False
  with pytest.raises(
    ConfigError, match="unknown config key 'train.total_step'"
  ):
    config_lib.apply_overrides(config, ["train.total_step=3"])
  with pytest.raises(ConfigError, match="unknown config key 'trian'"):
    config_lib.apply_overrides(config, ["trian.total_steps=3"])
  with pytest.raises(ConfigError, match="bad value for train.batch_size"):
    config_lib.apply_overrides(config, ["train.batch_size=abc"])


def test_sections_reject_unknown_keys():
  with pytest.raises(ConfigError, match="unknown key optim.lr"):
    config_lib.optim_config(lr=1.0)
  with pytest.raises(ConfigError, match="missing \\['eval'\\]"):
    config_lib.make_config(**{s: 0 for s in config_lib.SECTIONS if s != "eval"})
  config = toy.get_config()
  with pytest.raises(AttributeError):
    config.train.new_key = 1  # locked


def test_save_restore_round_trip(tmp_path):
  config = toy.get_config()
  config_lib.save_config(config, str(tmp_path))
  restored = config_lib.restore_config(str(tmp_path))
  assert restored.to_dict() == config.to_dict()
  assert isinstance(restored.data.modalities, tuple)
  assert isinstance(
    restored.optim.groups.discriminators, ml_collections.ConfigDict
  )
  with pytest.raises(ConfigError, match="config.json not found"):
    config_lib.restore_config(str(tmp_path / "nothing"))


def test_load_config_file_with_arg(tmp_path):
  path = tmp_path / "exp.py"
  path.write_text(
    "from tests.train import toy\n"
    "def get_config(arg=None):\n"
    "  return toy.get_config(arg)\n"
  )
  config = config_lib.load_config(f"{path}:smoke", ["train.total_steps=2"])
  assert config.train.total_steps == 2
  with pytest.raises(ConfigError, match="not found"):
    config_lib.load_config(str(tmp_path / "missing.py"))


def test_with_sections_resizes_model_and_loss_but_keeps_stage_and_classes():
  from msjax.methods import infomae, promobal

  stage2 = config_lib.load_config(
    str(pathlib.Path(__file__).resolve().parents[2] / "experiments/infomae.py")
    + ":stage=2"
  )
  base = infomae.default_config("base")
  base.loss.stage = 1
  config_lib.with_sections(stage2, base)
  assert tuple(stage2.model.swin.depths) == (2, 2, 4)
  assert stage2.loss.stage == 2  # kept
  assert stage2.model.swin.patch_norm  # the experiment's False overwritten
  sections = promobal.default_config("paper")
  sections.model.num_classes = 99
  config = config_lib.load_config(
    str(pathlib.Path(__file__).resolve().parents[2] / "experiments/promobal.py")
  )
  classes = config.model.num_classes
  config_lib.with_sections(config, sections)
  assert config.model.encoder == "resnet1d26"
  assert config.model.num_classes == classes != 99
