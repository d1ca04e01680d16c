"""``model.encoder_width``: ResNet encoders between the tiny and paper sizes."""

import pathlib

import jax
import numpy as np
import pytest

from msjax.methods import METHODS, encoders
from msjax.train import config_lib
from tests.methods import _train_util as tu

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Methods whose encoders are rows of ``encoders.ENCODERS``.
WIDTHED = sorted(
  name
  for name, method in METHODS.items()
  if "encoder_width" in method.default_config("tiny").model
)


def _shapes(method, config) -> dict:
  batch = tu.fixed_batch(tu.sources(config)[0], 4)
  return jax.eval_shape(
    lambda key: method.init(key, config, batch), jax.random.key(0)
  )["params"]


def _out_channels(params) -> dict[str, set[int]]:
  """Output channels of every stem conv and every stage's first conv."""
  found: dict[str, set[int]] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [getattr(k, "key", "") for k in path]
    if keys[-1] != "kernel":
      continue
    if "stem_conv" in keys:
      found.setdefault("stem", set()).add(leaf.shape[-1])
    for k in keys:
      if k.endswith("_block0") and "conv1" in keys:
        found.setdefault(k.split("_")[0], set()).add(leaf.shape[-1])
  return found


def test_every_resnet_method_has_the_key():
  # The encoder-based methods (not InfoMAE, MAE, CAV-MAE: their own models).
  assert len(WIDTHED) >= 17, WIDTHED
  assert {"protomm", "promobal", "tstcc", "clip", "ogm_ge"} <= set(WIDTHED)


@pytest.mark.parametrize("name", WIDTHED)
def test_width_scales_every_stage_and_the_stem(name):
  method = METHODS[name]
  config = tu.experiment_config(method)
  assert config.model.encoder == "resnet1d_tiny"
  assert config.model.encoder_width == 0
  # resnet1d_tiny: stages 4, 8 and an 8-wide stem.
  assert _out_channels(_shapes(method, config)) == {
    "stem": {8},
    "stage0": {4},
    "stage1": {8},
  }
  config.model.encoder_width = 16
  assert _out_channels(_shapes(method, config)) == {
    "stem": {32},
    "stage0": {16},
    "stage1": {32},
  }


@pytest.mark.parametrize(
  "row, width, stages, stem",
  [
    ("resnet1d_tiny", 16, (16, 32), 32),
    ("resnet1d_tiny", 5, (5, 10), 10),
    ("resnet1d26", 32, (32, 64, 128, 256), 32),
    ("resnet2d_tiny", 8, (8, 16), 8),
    ("resnet18", 16, (16, 32, 64, 128), 16),
  ],
)
def test_options_of_each_resnet_row(row, width, stages, stem):
  config = tu.experiment_config(METHODS["clip"])
  config.model.encoder = row
  config.model.encoder_width = width
  assert dict(encoders.encoder_options(config)) == {
    "stage_widths": stages,
    "stem_width": stem,
  }
  config.model.encoder_width = 0
  assert encoders.encoder_options(config) == ()


def test_the_rows_own_width_is_the_unscaled_encoder():
  method = METHODS["protomm"]
  config = tu.experiment_config(method)
  batch = tu.fixed_batch(tu.sources(config)[0], 4)
  plain = jax.jit(lambda key: method.init(key, config, batch))(
    jax.random.key(3)
  )
  scaled = config.copy_and_resolve_references()
  scaled.model.encoder_width = 4  # resnet1d_tiny's first stage
  same = jax.jit(lambda key: method.init(key, scaled, batch))(jax.random.key(3))
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(same), strict=True):
    np.testing.assert_array_equal(a, b)


def test_bad_widths_are_one_line_errors():
  config = tu.experiment_config(METHODS["clip"])
  config.model.encoder_width = -1
  with pytest.raises(ValueError, match=r"encoder_width must be >= 0, got -1"):
    encoders.encoder_options(config)
  swin = config_lib.load_config(
    f"{ROOT}/experiments/baselines.py:method=clip,encoder=swin",
    ["model.encoder_width=16"],
  )
  with pytest.raises(ValueError, match=r"model\.swin\.embed_dim") as error:
    encoders.encoder_options(swin)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize(
  "spec",
  [
    "protomm.py:smoke",
    "promobal.py:smoke",
    "baselines.py:smoke,method=tstcc",
    "protomm_paper.py:smoke=True,dataset=pamap2",
  ],
)
def test_experiment_configs_take_the_width_from_the_command_line(spec):
  config = config_lib.load_config(
    f"{ROOT}/experiments/{spec}", ["model.encoder_width=12"]
  )
  assert config.model.encoder_width == 12
  assert dict(encoders.encoder_options(config))["stage_widths"] == (12, 24)
