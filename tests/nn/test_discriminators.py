"""Density-ratio discriminators: tuple types, raw embeddings, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.nn import DensityRatioDiscriminator

B = 4


@pytest.fixture(scope="module")
def tuple_inputs():
  keys = jax.random.split(jax.random.key(0), 5)
  return {
    "x1": jax.random.normal(keys[0], (B, 2, 10, 20)),  # seismic STFT
    "x2": jax.random.normal(keys[1], (B, 2, 10, 40)),  # acoustic STFT
    "w1": jax.random.normal(keys[2], (B, 3, 32)),  # raw 1-D window
    "u1": jax.random.normal(keys[3], (B, 6)),
    "v1": jax.random.normal(keys[4], (B, 5)),
  }


@pytest.mark.parametrize(
  "raw_names, vec_names",
  [
    (("x1", "x2"), ("u1",)),
    (("x1",), ("u1",)),
    ((), ("v1", "u1")),
    (("w1",), ("v1",)),
  ],
  ids=["X1X2U1", "X1U1", "V1U1", "W1V1-1d"],
)
def test_tuple_types_use_every_input(tuple_inputs, raw_names, vec_names):
  disc = DensityRatioDiscriminator(
    len(raw_names),
    len(vec_names),
    hidden_dim=16,
    conv_features=(4,),
    raw_embed_dim=8,
  )
  raw = [tuple_inputs[n] for n in raw_names]
  vecs = [tuple_inputs[n] for n in vec_names]
  variables = jax.jit(disc.init)(jax.random.key(1), raw, vecs)
  assert set(variables) == {"params"}
  dense = [k for k in variables["params"] if k.startswith("dense")]
  assert len(dense) + 1 == 5  # 4 hidden + the logit layer
  assert len(
    [k for k in variables["params"] if k.startswith("raw_embed")]
  ) == len(raw_names)

  @jax.jit
  def logits(raw, vecs):
    return disc.apply(variables, raw, vecs)

  out = logits(raw, vecs)
  assert out.shape == (B,)
  grads = jax.grad(lambda r, v: logits(r, v).sum(), argnums=(0, 1))(raw, vecs)
  for g in jax.tree.leaves(grads):
    assert float(jnp.abs(g).sum()) > 0
  # Rows are scored independently: permuting the batch permutes the logits.
  perm = jnp.array([2, 0, 3, 1])
  np.testing.assert_allclose(
    logits([r[perm] for r in raw], [v[perm] for v in vecs]),
    out[perm],
    rtol=1e-5,
    atol=1e-6,
  )


def test_wrong_tuple_rejected(tuple_inputs):
  disc = DensityRatioDiscriminator(1, 1)
  x1, u1 = tuple_inputs["x1"], tuple_inputs["u1"]
  with pytest.raises(ValueError, match="1 raw inputs and 1 vectors"):
    jax.eval_shape(lambda: disc.init(jax.random.key(0), [x1, x1], [u1]))
  with pytest.raises(ValueError, match="vectors"):
    jax.eval_shape(lambda: disc.init(jax.random.key(0), [x1], [u1[:2]]))
  with pytest.raises(ValueError, match=r"\[B, C, T\]"):
    jax.eval_shape(lambda: disc.init(jax.random.key(0), [u1], [u1]))
