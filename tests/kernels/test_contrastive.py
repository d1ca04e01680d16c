"""Tests of msjax.kernels.contrastive: info_nce, nt_xent, pro_ucl.

Data-parallel equivalence lives in test_contrastive_sharding.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.contrastive import info_nce, nt_xent, pro_ucl
from tests.conftest import load_vectors
from tests.kernels import _vectors
from tests.kernels._vectors import assert_vectors, central_fd, inputs, unit

precision = _vectors.precision  # The shared f32/f64 fixture.

_info_nce = jax.jit(info_nce, static_argnames=("tau",))
_nt_xent = jax.jit(nt_xent, static_argnames=("tau",))
_pro_ucl = jax.jit(pro_ucl, static_argnames=("tau",))


# ----------------------------------------------------------------- vectors


def test_info_nce_vectors(precision):
  vec = load_vectors("info_nce_basic")
  a, b = inputs(vec, precision, "a", "b")
  tau = float(vec["hp_tau"])
  loss, grads = jax.value_and_grad(
    lambda a, b: _info_nce(a, b, tau=tau), argnums=(0, 1)
  )(a, b)
  assert_vectors(
    "info_nce_basic",
    precision,
    {"out_loss": loss, "grad_a": grads[0], "grad_b": grads[1]},
  )


def test_nt_xent_vectors(precision):
  vec = load_vectors("ntxent_basic")
  h1, h2 = inputs(vec, precision, "h1", "h2")
  tau = float(vec["hp_tau"])
  loss, grads = jax.value_and_grad(
    lambda a, b: _nt_xent(a, b, tau=tau), argnums=(0, 1)
  )(h1, h2)
  assert_vectors(
    "ntxent_basic",
    precision,
    {"out_loss": loss, "grad_h1": grads[0], "grad_h2": grads[1]},
  )


def test_pro_ucl_vectors(precision):
  vec = load_vectors("pro_ucl_basic")
  z, protos = inputs(vec, precision, "z", "P")
  tau = float(vec["hp_tau"])
  (loss, per_mod), grads = jax.value_and_grad(
    lambda z, p: _pro_ucl(z, vec["x_y"], p, tau=tau),
    argnums=(0, 1),
    has_aux=True,
  )(z, protos)
  # pro_ucl uses its inputs as given: compare with grad_, not gradtan_.
  assert_vectors(
    "pro_ucl_basic",
    precision,
    {
      "out_loss": loss,
      "out_per_modality": per_mod,
      "grad_z": grads[0],
      "grad_P": grads[1],
    },
  )


# -------------------------------------------------- brute-force references


def _np_pro_ucl(z, labels, protos, tau):
  """Per-anchor float64 loop over SPEC §3.1."""
  num_classes = protos.shape[0]
  per_mod = []
  for zm in z:
    feats = np.concatenate([zm, protos])
    item_labels = np.concatenate([labels, np.arange(num_classes)])
    counts = np.bincount(item_labels, minlength=num_classes)
    losses = []
    for i in range(zm.shape[0]):
      den, positives = 0.0, []
      for n in range(feats.shape[0]):
        if n == i:
          continue
        sim = feats[i] @ feats[n] / tau
        weight = counts[item_labels[n]] - (item_labels[n] == labels[i])
        den += np.exp(sim) / weight
        if item_labels[n] == labels[i]:
          positives.append(sim)
      losses.append(-np.mean([p - np.log(den) for p in positives]))
    per_mod.append(np.mean(losses))
  return np.mean(per_mod), np.array(per_mod)


def _random_ucl(seed, num_mod=3, batch=10, num_classes=5, dim=6):
  rng = np.random.default_rng(seed)
  z = unit(rng.normal(size=(num_mod, batch, dim)))
  protos = unit(rng.normal(size=(num_classes, dim)))
  # class 4 absent from the batch, class 3 a singleton
  labels = np.array([0, 0, 1, 2, 1, 0, 3, 2, 2, 1][:batch], np.int32)
  return z, labels, protos


def test_pro_ucl_matches_per_anchor_loop(x64):
  z, labels, protos = _random_ucl(1)
  loss, per_mod = _pro_ucl(z, labels, protos, tau=0.2)
  ref_loss, ref_per_mod = _np_pro_ucl(z, labels, protos, 0.2)
  np.testing.assert_allclose(per_mod, ref_per_mod, rtol=1e-10)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)


def _np_info_nce(a, b, tau):
  a, b = unit(a), unit(b)

  def ce(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -np.mean(np.diag(logp))

  return 0.5 * (ce(a @ b.T / tau) + ce(b @ a.T / tau))


def test_info_nce_matches_numpy_and_is_symmetric(x64):
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(2, 7, 5))
  np.testing.assert_allclose(
    _info_nce(a, b, tau=0.3), _np_info_nce(a, b, 0.3), rtol=1e-10
  )
  np.testing.assert_allclose(
    _info_nce(a, b, tau=0.3), _info_nce(b, a, tau=0.3), rtol=1e-12
  )


def test_nt_xent_invariant_to_positive_row_scaling(x64):
  rng = np.random.default_rng(3)
  h1, h2 = rng.normal(size=(2, 6, 4))
  scale1 = rng.uniform(0.1, 10.0, size=(6, 1))
  scale2 = rng.uniform(0.1, 10.0, size=(6, 1))
  np.testing.assert_allclose(
    _nt_xent(h1 * scale1, h2 * scale2, tau=0.2),
    _nt_xent(h1, h2, tau=0.2),
    rtol=1e-12,
  )


def test_nt_xent_matches_numpy(x64):
  rng = np.random.default_rng(4)
  h1, h2 = rng.normal(size=(2, 5, 3))
  u = unit(np.concatenate([h1, h2]))
  sim = u @ u.T / 0.5
  total = 0.0
  for i in range(10):
    others = [j for j in range(10) if j != i]
    total += -(sim[i, (i + 5) % 10] - np.log(np.exp(sim[i, others]).sum()))
  np.testing.assert_allclose(_nt_xent(h1, h2, tau=0.5), total / 10, rtol=1e-10)


# --------------------------------------------------- finite differences


@pytest.mark.parametrize("argnum", [0, 1])
def test_info_nce_finite_differences(x64, argnum):
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=(2, 6, 4))
  central_fd(lambda a, b: _info_nce(a, b, tau=0.5), [a, b], argnum)


@pytest.mark.parametrize("argnum", [0, 1])
def test_nt_xent_finite_differences(x64, argnum):
  rng = np.random.default_rng(6)
  h1, h2 = rng.normal(size=(2, 6, 4))
  central_fd(lambda a, b: _nt_xent(a, b, tau=0.5), [h1, h2], argnum)


@pytest.mark.parametrize("argnum", [0, 1])
def test_pro_ucl_finite_differences(x64, argnum):
  z, labels, protos = _random_ucl(7)
  central_fd(
    lambda z, p: _pro_ucl(z, labels, p, tau=0.5)[0], [z, protos], argnum
  )


# ------------------------------------------------------ dtypes, errors


def test_bfloat16_inputs_give_finite_float32():
  vec = load_vectors("pro_ucl_basic")
  z = jnp.asarray(vec["x_z_f32"], jnp.bfloat16)
  protos = jnp.asarray(vec["x_P_f32"], jnp.bfloat16)
  loss, per_mod = _pro_ucl(z, vec["x_y"], protos, tau=0.1)
  assert loss.dtype == per_mod.dtype == jnp.float32
  assert np.all(np.isfinite(per_mod))
  for fun in (_info_nce, _nt_xent):
    value = fun(z[0], z[1], tau=0.1)
    assert value.dtype == jnp.float32 and np.isfinite(value)


def test_zero_vector_rows_stay_finite():
  a = np.zeros((4, 3), np.float32)
  a[1] = 1.0
  loss, grads = jax.value_and_grad(
    lambda a: _info_nce(a, a, tau=0.1) + _nt_xent(a, a, tau=0.1)
  )(a)
  assert np.isfinite(loss) and np.all(np.isfinite(grads))


@pytest.mark.parametrize(
  ("call", "match"),
  [
    (lambda: info_nce(np.ones((4, 3)), np.ones((5, 3))), "a .* b"),
    (lambda: info_nce(np.ones((4,)), np.ones((4,))), "a must have shape"),
    (lambda: nt_xent(np.ones((4, 3)), np.ones((4, 2))), "h1 .* h2"),
    (lambda: nt_xent(np.ones((4, 3)), np.ones((4, 3)), tau=0.0), "tau"),
    (
      lambda: pro_ucl(np.ones((4, 3)), np.zeros(4, np.int32), np.ones((2, 3))),
      "z must have shape",
    ),
    (
      lambda: pro_ucl(
        np.ones((1, 4, 3)), np.zeros(5, np.int32), np.ones((2, 3))
      ),
      "labels",
    ),
    (
      lambda: pro_ucl(
        np.ones((1, 4, 3)), np.zeros(4, np.float32), np.ones((2, 3))
      ),
      "labels .* integer",
    ),
    (
      lambda: pro_ucl(
        np.ones((1, 4, 3)), np.zeros(4, np.int32), np.ones((2, 5))
      ),
      "prototypes",
    ),
  ],
)
def test_bad_inputs_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
