"""1-D and 2-D ResNet encoders: shapes, BatchNorm modes, paper sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.nn import ResNet1DTiny, ResNet2DTiny, ResNet18, ResNet26_1D
from tests.nn import _util


@pytest.mark.parametrize(
  "model, shape, out_dim",
  [(ResNet1DTiny(), (4, 3, 64), 16), (ResNet2DTiny(), (4, 1, 16, 12), 8)],
  ids=["resnet1d", "resnet2d"],
)
def test_shapes_and_batchnorm_modes(key, model, shape, out_dim):
  x = jax.random.normal(key, shape) * 3.0 + 1.0
  variables = _util.init(model, key, x, train=False)
  assert set(variables) == {"params", "batch_stats"}
  feats, aux = _util.apply(model, variables, x, train=False)
  assert feats.shape == (shape[0], out_dim)
  assert "stage0" in aux and "stage1" in aux
  # Train mode: batch statistics are used and the running averages move.
  (feats_t, _), state = _util.apply(
    model, variables, x, train=True, mutable=("batch_stats",)
  )
  stem_old = variables["batch_stats"]["stem_bn"]
  stem_new = state["batch_stats"]["stem_bn"]
  assert not np.allclose(stem_old["mean"], stem_new["mean"])
  assert not np.allclose(feats_t, feats)
  # Eval mode: running averages are used and left untouched.
  (_, _), state_eval = _util.apply(
    model, variables, x, train=False, mutable=("batch_stats",)
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    state_eval["batch_stats"],
    variables["batch_stats"],
  )
  # Eval output of a sample does not depend on the rest of the batch.
  single, _ = _util.apply(model, variables, x[:1], train=False)
  np.testing.assert_allclose(single[0], feats[0], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="shape"):
    jax.eval_shape(lambda: model.init(key, x[0], train=False))


def test_resnet26_1d_has_26_weight_layers_and_layout(key):
  model = ResNet26_1D()
  shapes = jax.eval_shape(
    lambda: model.init(key, jnp.zeros((1, 2, 256)), train=False)
  )
  params = shapes["params"]
  paths = [
    "/".join(str(k.key) for k in path)
    for path, _ in jax.tree_util.tree_leaves_with_path(params)
  ]
  weight_layers = [
    p for p in paths if p.endswith("kernel") and "/proj/" not in p
  ]
  assert len(weight_layers) == 26
  assert params["head"]["kernel"].shape == (2048, 512)
  assert params["stage3_block1"]["conv2"]["kernel"].shape == (3, 512, 512)
  out = jax.eval_shape(
    lambda v, x: model.apply(v, x, train=False),
    shapes,
    jax.ShapeDtypeStruct((8, 2, 256), jnp.float32),
  )
  assert out[0].shape == (8, 512)
  assert out[1]["stage3"].shape == (8, 256 // 32, 2048)


def test_resnet18_parameter_count(key):
  def count(channels):
    shapes = jax.eval_shape(
      lambda: ResNet18().init(
        key, jnp.zeros((1, channels, 64, 64)), train=False
      )
    )
    return _util.num_params(shapes["params"])

  # torchvision resnet18 (11,689,512) minus its 1000-way fc (513,000).
  assert count(3) == 11_689_512 - 513_000
  assert count(1) == count(3) - 2 * 64 * 7 * 7
