"""Tests of msjax.kernels.geometry: ca_loss (SPEC §3.5), fc_rs (§3.7)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.geometry import ca_loss, fc_rs
from tests.conftest import load_vectors
from tests.kernels import _vectors
from tests.kernels._vectors import assert_vectors

precision = _vectors.precision  # The shared f32/f64 fixture.

_ca = jax.jit(ca_loss)
_fc_rs = jax.jit(fc_rs, static_argnames=("num_classes",))


def test_ca_vectors(precision):
  vec = load_vectors("ca_basic")
  sfx = "" if precision == "f64" else "_f32"
  (loss, per_mod), grads = jax.value_and_grad(
    _ca, argnums=(0, 1), has_aux=True
  )(vec["x_W" + sfx], vec["x_P" + sfx])
  assert_vectors(
    "ca_basic",
    precision,
    {
      "out_loss": loss,
      "out_per_modality": per_mod,
      "grad_W": grads[0],
      "grad_P": grads[1],
    },
  )


def test_fc_rs_vectors(precision):
  vec = load_vectors("fc_rs_basic")
  sfx = "" if precision == "f64" else "_f32"
  fc, rs, class_fc = _fc_rs(
    vec["x_f" + sfx], vec["x_y"], num_classes=int(vec["hp_num_classes"])
  )
  assert_vectors(
    "fc_rs_basic",
    precision,
    {"out_FC": fc, "out_RS": rs, "out_class_fc": class_fc},
  )


# ------------------------------------------------- brute-force references


def _np_fc_rs(features, labels, num_classes):
  """Loop over SPEC §3.7 with the testvector conventions."""
  feats = features / np.linalg.norm(features, axis=1, keepdims=True)
  class_fc = np.full(num_classes, np.nan)
  means = {}
  for c in range(num_classes):
    members = feats[labels == c]
    if len(members):
      means[c] = members.mean(axis=0)
    if len(members) >= 2:
      class_fc[c] = np.mean(
        [
          np.linalg.norm(members[i] - members[j])
          for i, j in itertools.combinations(range(len(members)), 2)
        ]
      )
  rs = np.mean(
    [
      np.linalg.norm(means[c] - means[d])
      for c in means
      for d in means
      if c != d
    ]
  )
  return np.nanmean(class_fc), rs, class_fc


def test_fc_rs_matches_loop(x64):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(13, 5)) * rng.uniform(0.5, 3.0, size=(13, 1))
  # class 0: 5, class 1: 4, class 2: singleton, class 3 absent, class 4: 2,
  # and an unlabelled row (-1) that must be ignored
  labels = np.array([0, 1, 0, 2, 1, 0, 4, 1, 0, 4, 1, 0, -1], np.int32)
  fc, rs, class_fc = _fc_rs(features, labels, num_classes=5)
  ref_fc, ref_rs, ref_class_fc = _np_fc_rs(features, labels, 5)
  np.testing.assert_allclose(class_fc, ref_class_fc, rtol=1e-10)
  assert np.isnan(class_fc[2]) and np.isnan(class_fc[3])
  np.testing.assert_allclose(fc, ref_fc, rtol=1e-10)
  np.testing.assert_allclose(rs, ref_rs, rtol=1e-10)


def test_fc_rs_degenerate_cases():
  features = np.eye(3, dtype=np.float32)
  fc, rs, class_fc = _fc_rs(
    features, np.array([0, 1, 2], np.int32), num_classes=3
  )
  assert np.isnan(fc) and np.all(np.isnan(class_fc))  # no class has 2
  np.testing.assert_allclose(rs, np.sqrt(2.0), rtol=1e-6)
  fc, rs, _ = _fc_rs(features, np.zeros(3, np.int32), num_classes=3)
  np.testing.assert_allclose(fc, np.sqrt(2.0), rtol=1e-6)
  assert np.isnan(rs)  # a single class present
  # identical features: distance exactly 0, not sqrt of rounding noise
  same = np.tile(np.array([[0.3, -1.2, 0.5]], np.float32), (4, 1))
  fc, _, _ = _fc_rs(same, np.zeros(4, np.int32), num_classes=1)
  assert float(fc) == 0.0


# ------------------------------------------------- CA invariants and FD


def test_ca_scale_invariant_and_zero_when_aligned(x64):
  rng = np.random.default_rng(1)
  weights, protos = rng.normal(size=(2, 4, 3)), rng.normal(size=(4, 3))
  loss, per_mod = _ca(weights, protos)
  scaled_loss, scaled = _ca(
    weights * np.array([3.0, 0.2])[:, None, None], protos * 7.0
  )
  np.testing.assert_allclose(scaled, per_mod, rtol=1e-12)
  aligned, _ = _ca(np.stack([protos, 5.0 * protos]), protos)
  np.testing.assert_allclose(aligned, 0.0, atol=1e-14)
  # brute force: ||W/|W| - P/|P|||^2 per modality
  ref = [
    np.sum((w / np.linalg.norm(w) - protos / np.linalg.norm(protos)) ** 2)
    for w in weights
  ]
  np.testing.assert_allclose(per_mod, ref, rtol=1e-12)
  np.testing.assert_allclose(loss, np.mean(ref), rtol=1e-12)
  np.testing.assert_allclose(scaled_loss, loss, rtol=1e-12)


@pytest.mark.parametrize("argnum", [0, 1])
def test_ca_finite_differences(x64, argnum):
  rng = np.random.default_rng(2)
  args = [
    jnp.asarray(rng.normal(size=(3, 4, 5))),
    jnp.asarray(rng.normal(size=(4, 5))),
  ]
  fun = lambda w, p: _ca(w, p)[0]
  direction = rng.normal(size=args[argnum].shape)
  step = 1e-6
  plus, minus = list(args), list(args)
  plus[argnum] = args[argnum] + step * direction
  minus[argnum] = args[argnum] - step * direction
  numeric = (fun(*plus) - fun(*minus)) / (2 * step)
  analytic = jnp.sum(jax.grad(fun, argnums=argnum)(*args) * direction)
  np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_ca_zero_classifier_is_finite():
  weights = np.zeros((2, 4, 3), np.float32)
  protos = np.ones((4, 3), np.float32)
  loss, grads = jax.value_and_grad(lambda w, p: _ca(w, p)[0], argnums=(0, 1))(
    weights, protos
  )
  np.testing.assert_allclose(loss, 1.0, rtol=1e-6)  # ||0 - unit||^2
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_bfloat16_inputs_give_float32():
  vec = load_vectors("ca_basic")
  loss, per_mod = _ca(
    jnp.asarray(vec["x_W_f32"], jnp.bfloat16),
    jnp.asarray(vec["x_P_f32"], jnp.bfloat16),
  )
  assert loss.dtype == per_mod.dtype == jnp.float32
  assert np.all(np.isfinite(per_mod))
  vec = load_vectors("fc_rs_basic")
  out = _fc_rs(
    jnp.asarray(vec["x_f_f32"], jnp.bfloat16), vec["x_y"], num_classes=5
  )
  assert all(v.dtype == jnp.float32 and np.all(np.isfinite(v)) for v in out)


@pytest.mark.parametrize(
  ("call", "match"),
  [
    (
      lambda: ca_loss(np.ones((4, 3)), np.ones((4, 3))),
      "classifier_weights must have shape",
    ),
    (lambda: ca_loss(np.ones((2, 4, 3)), np.ones((5, 3))), "prototypes"),
    (
      lambda: fc_rs(np.ones((4,)), np.zeros(4, np.int32), num_classes=2),
      "features must have shape",
    ),
    (
      lambda: fc_rs(np.ones((4, 3)), np.zeros(5, np.int32), num_classes=2),
      "labels",
    ),
    (lambda: fc_rs(np.ones((4, 3)), np.zeros(4), num_classes=2), "integer"),
    (
      lambda: fc_rs(np.ones((4, 3)), np.zeros(4, np.int32), num_classes=0),
      "num_classes",
    ),
  ],
)
def test_bad_inputs_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
