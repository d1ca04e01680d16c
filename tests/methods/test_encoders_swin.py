"""``model.encoder = "swin"``: baselines on InfoMAE's SWIN encoder."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.data import synthetic
from msjax.methods import METHODS, encoders
from msjax.train import config_lib
from msjax.train.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASELINES = ROOT / "experiments" / "baselines.py"


def _config(method: str):
  return config_lib.load_config(f"{BASELINES}:method={method},encoder=swin")


def _example(config, rows: int = 4) -> dict:
  source = synthetic.SyntheticSource(config.data, "train")
  return source.get(np.arange(rows))


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("method", ["clip", "supervised_concat"])
def test_baseline_encoder_is_infomae_encoder_in_size(method):
  """Per modality: SWIN + Dense(F) head == InfoMAE's SWIN with out_dim F."""
  config = _config(method)
  infomae = config_lib.load_config(f"{ROOT}/experiments/infomae.py:stage=1")
  assert config.model.swin.to_dict() == infomae.model.swin.to_dict()
  example = _example(config)
  shapes = {
    name: jax.eval_shape(
      lambda k, c=c: METHODS[c.method].init(k, c, example), jax.random.key(0)
    )["params"]
    for name, c in (("baseline", config), ("infomae", infomae))
  }
  for m in config.data.modalities:
    ours = _count(shapes["baseline"]["encoders"][f"encoder_{m}"])
    ours += _count(shapes["baseline"]["encoders"][f"head_{m}"])
    theirs = _count(shapes["infomae"][f"encoder_{m}"])
    assert ours == theirs > 50_000, (m, ours, theirs)


def test_swin_baseline_trains_and_embeds():
  config = config_lib.load_config(
    f"{BASELINES}:method=supervised_concat,encoder=swin,smoke"
  )
  method = METHODS[config.method]
  batch = _example(config, 8)
  fast = {"xla_backend_optimization_level": 0}
  variables = jax.jit(
    lambda k: method.init(k, config, batch), compiler_options=fast
  )(jax.random.key(0))

  @functools.partial(jax.jit, compiler_options=fast)
  def grads(params):
    def loss(p):
      out = method.loss_fn(
        {**variables, "params": p}, batch, jax.random.key(1), config, 0
      )
      return out[0]

    return jax.value_and_grad(loss)(params)

  value, g = grads(variables["params"])
  assert np.isfinite(float(value))
  for m in config.data.modalities:
    swin = g["encoders"][f"encoder_{m}"]["swin"]
    norm = float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(swin))))
    assert norm > 1e-6, m
  emb = jax.jit(lambda v: method.embed(v, batch, config))(variables)
  width = config.model.feature_dim
  assert {k: v.shape for k, v in emb.items()} == {
    "fused": (8, 2 * width),
    "ppg": (8, width),
    "acc": (8, width),
  }


def test_bad_swin_configs_are_one_line_errors():
  config = _config("clip")
  with config.unlocked():
    del config.model["patch_size"]
  with pytest.raises(ValueError, match="needs model.patch_size"):
    encoders.encoder_options(config)
  config = _config("clip")
  with config.unlocked():
    config.model.swin.pool = "flatten"
  with pytest.raises(ValueError, match=r"fields \['pool'\]"):
    encoders.encoder_options(config)
  for arg, match in (
    ("method=clip,encoder=resnet", "encoder must be 'swin'"),
    ("method=mae,encoder=swin", "not 'mae'"),
  ):
    with pytest.raises(ConfigError, match=match):
      config_lib.load_config(f"{BASELINES}:{arg}")
