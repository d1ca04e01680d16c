"""MLP projector, prototype bank, linear classifier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.nn import LinearClassifier, MLPProjector, PrototypeBank
from tests.nn import _util


def test_mlp_projector_shapes_bn_and_dropout(key):
  model = MLPProjector(
    (16, 16), 8, use_bn=True, final_bn=True, dropout_rate=0.5
  )
  x = jax.random.normal(key, (6, 12)) + 2.0
  variables = _util.init(model, key, x, train=False)
  assert set(variables["params"]) == {"dense0", "bn0", "dense1", "bn1", "out"}
  assert "bias" not in variables["params"]["out"]
  out = _util.apply(model, variables, x, train=False)
  assert out.shape == (6, 8)
  rngs = lambda s: {"dropout": jax.random.key(s, impl="rbg")}  # noqa: E731
  # Eval: deterministic, stats untouched; train: dropout varies, stats move.
  (e1, st) = _util.apply(
    model, variables, x, rngs=rngs(1), train=False, mutable=("batch_stats",)
  )
  np.testing.assert_array_equal(e1, out)
  jax.tree.map(
    np.testing.assert_array_equal, st["batch_stats"], variables["batch_stats"]
  )
  t1, st1 = _util.apply(
    model, variables, x, rngs=rngs(1), train=True, mutable=("batch_stats",)
  )
  t2, _ = _util.apply(
    model, variables, x, rngs=rngs(2), train=True, mutable=("batch_stats",)
  )
  assert not np.allclose(t1, t2)
  assert not np.allclose(
    st1["batch_stats"]["bn0"]["mean"], variables["batch_stats"]["bn0"]["mean"]
  )
  # The final BN (no affine) standardises the batch in train mode.
  np.testing.assert_allclose(t1.mean(0), 0.0, atol=1e-4)


def test_mlp_projector_plain_is_affine_stack(key):
  model = MLPProjector((), 5)
  x = jax.random.normal(key, (3, 4))
  variables = _util.init(model, key, x, train=False)
  p = variables["params"]["out"]
  np.testing.assert_allclose(
    _util.apply(model, variables, x, train=False),
    x @ p["kernel"] + p["bias"],
    rtol=1e-6,
  )


def test_prototype_bank_unit_rows_and_scores(key):
  bank = PrototypeBank(10, 6)
  variables = bank.init(key)
  raw = variables["params"]["prototypes"]
  assert raw.shape == (10, 6)
  np.testing.assert_allclose(jnp.linalg.norm(raw, axis=1), 1.0, rtol=1e-6)
  z = jax.random.normal(key, (3, 6))
  protos, scores = bank.apply(variables, z)
  np.testing.assert_allclose(scores, z @ raw.T, rtol=1e-5, atol=1e-6)
  # Normalised rows are returned whatever the parameter became.
  scaled = {"params": {"prototypes": raw * jnp.arange(1.0, 11.0)[:, None]}}
  protos2, none = bank.apply(scaled)
  assert none is None
  np.testing.assert_allclose(protos2, raw, rtol=1e-5, atol=1e-6)
  raw_bank = PrototypeBank(10, 6, normalize=False)
  np.testing.assert_allclose(
    raw_bank.apply(scaled)[0], scaled["params"]["prototypes"]
  )
  with pytest.raises(ValueError, match="E=6"):
    bank.apply(variables, z[:, :5])


def test_linear_classifier_spec_layout(key):
  clf = LinearClassifier(4)
  z = jax.random.normal(key, (5, 7))
  variables = clf.init(key, z)
  w, b = variables["params"]["weight"], variables["params"]["bias"]
  assert w.shape == (4, 7) and b.shape == (4,)
  b = b + 0.5
  logits = clf.apply({"params": {"weight": w, "bias": b}}, z)
  np.testing.assert_allclose(logits, z @ w.T + b, rtol=1e-5, atol=1e-6)
  assert set(LinearClassifier(4, use_bias=False).init(key, z)["params"]) == {
    "weight"
  }
