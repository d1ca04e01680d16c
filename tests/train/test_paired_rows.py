"""Unsynchronized rows (InfoMAE's pair-ratio subsets) reach only methods
whose objective never relates two modalities of one row."""

import pathlib

import pytest

from msjax import methods
from msjax.data import pairing_config
from msjax.train import config_lib, loop
from msjax.train.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _config(method, **loss):
  config = method.default_config("tiny")
  config.data = config_lib.load_config(
    str(ROOT / "experiments/protomm.py:smoke"), []
  ).data
  config.loss.update(loss)
  return config


@pytest.mark.parametrize(
  ("name", "loss", "required"),
  [
    ("protomm", {}, True),
    ("promobal", {}, True),
    ("clip", {}, True),
    ("joint", {}, True),
    ("supervised_concat", {}, True),
    ("supervised_sum", {}, True),
    ("simclr", {}, False),
    ("infomae", {"stage": 1}, False),
    # Stage 2 reads batch["paired"]: unsynchronized rows feed only its
    # unimodal terms (tests/methods/test_infomae_pairs.py).
    ("infomae", {"stage": 2}, False),
    ("slip", {}, True),
    ("ogm_ge", {}, True),
  ],
)
def test_which_objectives_need_synchronized_rows(name, loss, required):
  method = methods.METHODS[name]
  config = _config(method, **loss)
  assert method.requires_paired_rows(config) is required


def test_methods_without_the_hook_need_synchronized_rows():
  bare = methods.Method(
    default_config=None, init=None, loss_fn=None, embed=None
  )
  assert bare.requires_paired_rows(None) is True


def test_mixed_subset_for_a_cross_modal_method_is_one_line(tmp_path):
  config = config_lib.load_config(
    str(ROOT / "experiments/protomm.py:smoke"), []
  )
  config.data = pairing_config(config.data, pair_ratio=0.5, subset="mixed")
  with pytest.raises(ConfigError) as error:
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert str(error.value) == (
    "protomm relates the modalities of each row, but data.subset='mixed'"
    " gives rows whose modalities come from different windows: use"
    " data.subset='paired'"
  )
