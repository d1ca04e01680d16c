"""Tests of msjax.kernels.prototypes.mpp_loss (SPEC §2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.prototypes import MPPAux, mpp_loss
from tests.conftest import load_tolerances, load_vectors

MPP_FILES = ["mpp_basic", "mpp_swav_alpha1", "mpp_v1_alpha0"]


def _hp(vec):
  return dict(
    tau=float(vec["hp_tau"]),
    alpha=float(vec["hp_alpha"]),
    epsilon=float(vec["hp_epsilon"]),
    num_iters=int(vec["hp_num_iters"]),
  )


@functools.cache
def _value_and_grad(tau, alpha, epsilon, num_iters):
  loss = functools.partial(
    mpp_loss, tau=tau, alpha=alpha, epsilon=epsilon, num_iters=num_iters
  )
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def _run(vec, suffix):
  hp = _hp(vec)
  fn = _value_and_grad(**hp)
  return fn(vec["x_z" + suffix], vec["x_c" + suffix])


def _check(vec, result, tol):
  (loss, aux), (grad_z, grad_c) = result
  assert isinstance(aux, MPPAux)
  num_pairs = aux.pair_ce.shape[0]
  off_diag = ~np.eye(num_pairs, dtype=bool)
  np.testing.assert_allclose(loss, vec["out_loss"], **tol("out_loss"))
  np.testing.assert_allclose(aux.q, vec["out_q"], **tol("out_q"))
  np.testing.assert_allclose(
    aux.pair_ce[off_diag], vec["out_pair_ce"][off_diag], **tol("out_pair_ce")
  )
  for term in ("L_within", "L_between"):
    value = getattr(aux, term)
    if "out_" + term in vec:
      np.testing.assert_allclose(
        value, vec["out_" + term], **tol("out_" + term)
      )
    else:
      assert value is None
  # Inputs are used as given: compare with grad_, not gradtan_.
  np.testing.assert_allclose(grad_z, vec["grad_z"], **tol("grad_z"))
  np.testing.assert_allclose(grad_c, vec["grad_c"], **tol("grad_c"))


@pytest.mark.parametrize("name", MPP_FILES)
def test_vectors_float32(name):
  vec = load_vectors(name)
  tolerances = load_tolerances()[name]
  result = _run(vec, "_f32")
  assert result[0][0].dtype == jnp.float32
  _check(vec, result, lambda key: tolerances[key])


@pytest.mark.parametrize("name", MPP_FILES)
def test_vectors_float64(name, x64):
  vec = load_vectors(name)
  result = _run(vec, "")
  assert result[0][0].dtype == jnp.float64
  _check(vec, result, lambda key: dict(rtol=1e-8, atol=1e-10))


def test_v1_with_within_weight_raises():
  vec = load_vectors("mpp_v1_raises")
  assert bool(vec["expect_error"])
  with pytest.raises(ValueError, match="V"):
    mpp_loss(vec["x_z_f32"], vec["x_c_f32"], **_hp(vec))


def test_m1_with_between_weight_raises():
  z = jnp.ones((1, 2, 4, 3)) / np.sqrt(3.0)
  with pytest.raises(ValueError, match="M"):
    mpp_loss(z, jnp.eye(3), alpha=0.5)


@pytest.mark.parametrize(
  "kwargs,match", [(dict(alpha=1.5), "alpha"), (dict(tau=0.0), "tau")]
)
def test_rejects_bad_hyperparameters(kwargs, match):
  z = jnp.ones((2, 2, 4, 3)) / np.sqrt(3.0)
  with pytest.raises(ValueError, match=match):
    mpp_loss(z, jnp.eye(3), **kwargs)


def test_rejects_bad_shapes():
  with pytest.raises(ValueError, match="z"):
    mpp_loss(jnp.ones((2, 4, 3)), jnp.eye(3))
  with pytest.raises(ValueError, match="E"):
    mpp_loss(jnp.ones((2, 2, 4, 3)), jnp.eye(4))


def _np_mpp(z, c, tau, alpha, q):
  """Independent numpy evaluation of SPEC §2 given the targets q."""
  num_m, num_v = z.shape[:2]
  scores = np.einsum("mvbe,ke->mvbk", z, c) / tau
  logp = scores - scores.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  within, between = [], []
  for m in range(num_m):
    for v in range(num_v):
      for m2 in range(num_m):
        for v2 in range(num_v):
          ce = -np.mean(np.sum(q[m, v] * logp[m2, v2], -1))
          if m == m2 and v != v2:
            within.append(ce)
          elif m != m2:
            between.append(ce)
  terms = []
  if alpha:
    terms.append(alpha * np.mean(within))
  if alpha != 1:
    terms.append((1 - alpha) * np.mean(between))
  return sum(terms)


@pytest.mark.parametrize(
  "shape,alpha",
  [((3, 2, 5, 4), 0.3), ((2, 3, 6, 4), 0.0)],
  ids=["m3v2", "m2v3-between-only"],
)
def test_matches_numpy_and_finite_differences(shape, alpha, x64):
  rng = np.random.default_rng(sum(shape))
  z = rng.normal(size=shape)
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  c = rng.normal(size=(7, shape[-1]))
  c /= np.linalg.norm(c, axis=-1, keepdims=True)
  hp = dict(tau=0.2, alpha=alpha, epsilon=0.1, num_iters=3)
  fn = jax.jit(functools.partial(mpp_loss, **hp))
  loss, aux = fn(z, c)
  q = np.asarray(aux.q)
  np.testing.assert_allclose(loss, _np_mpp(z, c, 0.2, alpha, q), rtol=1e-10)
  # q is a stop-gradient target: the gradient equals that of the numpy
  # formula with q held fixed, checked by central differences.
  grad_z, grad_c = jax.jit(jax.grad(lambda z, c: fn(z, c)[0], argnums=(0, 1)))(
    z, c
  )
  step = 1e-6
  for arg, grad in ((z, grad_z), (c, grad_c)):
    flat = arg.ravel()
    for i in rng.choice(flat.size, size=6, replace=False):
      hi, lo = flat.copy(), flat.copy()
      hi[i] += step
      lo[i] -= step
      if arg is z:
        f_hi = _np_mpp(hi.reshape(z.shape), c, 0.2, alpha, q)
        f_lo = _np_mpp(lo.reshape(z.shape), c, 0.2, alpha, q)
      else:
        f_hi = _np_mpp(z, hi.reshape(c.shape), 0.2, alpha, q)
        f_lo = _np_mpp(z, lo.reshape(c.shape), 0.2, alpha, q)
      np.testing.assert_allclose(
        np.ravel(grad)[i], (f_hi - f_lo) / (2 * step), rtol=1e-6, atol=1e-9
      )


def test_bfloat16_inputs_give_float32():
  z = jax.random.normal(jax.random.key(1), (2, 2, 8, 6))
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  c = jax.random.normal(jax.random.key(2), (5, 6))
  c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
  full, _ = jax.jit(mpp_loss)(z, c)
  low, aux = jax.jit(mpp_loss)(z.astype(jnp.bfloat16), c.astype(jnp.bfloat16))
  assert low.dtype == jnp.float32 and aux.q.dtype == jnp.float32
  np.testing.assert_allclose(low, full, rtol=3e-2)
