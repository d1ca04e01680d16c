"""Tests for msjax.kernels.density_ratio (SPEC §4.1-4.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.density_ratio import (
  discriminator_bce,
  infomae_private_loss,
  infomae_shared_loss,
  marginal_permutations,
  product_of_marginals,
)
from tests.conftest import load_tolerances, load_vectors

F64_TOL = {"rtol": 1e-8, "atol": 1e-10}

# name -> (function of the inputs dict, input names in positional order)
CASES = {
  "infomae_disc_bce": (
    lambda x, hp: discriminator_bce(x["t_joint"], x["t_product"]),
    ("t_joint", "t_product"),
  ),
  "infomae_shared": (
    lambda x, hp: infomae_shared_loss(
      x["U1"],
      x["U2"],
      x["t_x1x2u"],
      x["t_xiui"],
      x["t_xjui"],
      alpha=hp["alpha"],
      beta=hp["beta"],
    ),
    ("U1", "U2", "t_x1x2u", "t_xiui", "t_xjui"),
  ),
  "infomae_private": (
    lambda x, hp: infomae_private_loss(
      x["t_xv"], x["t_vu"], gamma=hp["gamma"], eps=hp["eps"]
    ),
    ("t_xv", "t_vu"),
  ),
}


def _check_vectors(name: str, float64: bool) -> None:
  data = load_vectors(name)
  fn, inputs = CASES[name]
  hp = {k[3:]: float(v) for k, v in data.items() if k.startswith("hp_")}
  suffix = "" if float64 else "_f32"
  x = {n: jnp.asarray(data[f"x_{n}{suffix}"]) for n in inputs}
  dtype = jnp.float64 if float64 else jnp.float32
  for v in x.values():
    assert v.dtype == dtype
  loss, grads = jax.jit(
    jax.value_and_grad(lambda x: fn(x, hp) * data["r_loss"])
  )(x)
  tols = load_tolerances()[name]
  tol = F64_TOL if float64 else tols["out_loss"]
  assert loss.dtype == dtype
  np.testing.assert_allclose(loss, data["out_loss"], **tol)
  for n in inputs:
    tol = F64_TOL if float64 else tols[f"grad_{n}"]
    np.testing.assert_allclose(grads[n], data[f"grad_{n}"], **tol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_vectors_float32(name):
  _check_vectors(name, float64=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_vectors_float64(name, x64):
  _check_vectors(name, float64=True)


def _central_fd(f, x, eps=1e-6):
  x = np.asarray(x, np.float64)
  g = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    xp, xm = x.copy(), x.copy()
    xp[idx] += eps
    xm[idx] -= eps
    g[idx] = (float(f(jnp.asarray(xp))) - float(f(jnp.asarray(xm)))) / (2 * eps)
  return g


def test_finite_differences_float64(x64):
  rng = np.random.default_rng(3)
  b, e = 5, 3
  u1, u2 = rng.normal(size=(2, b, e))
  t = rng.normal(size=(5, 2, b)) * 2.0
  f_shared = jax.jit(
    lambda u: infomae_shared_loss(u, u2, t[0], t[1], t[2], alpha=0.7, beta=0.2)
  )
  np.testing.assert_allclose(
    jax.grad(f_shared)(u1), _central_fd(f_shared, u1), rtol=1e-6, atol=1e-8
  )
  f_bce = jax.jit(lambda tj: discriminator_bce(tj, t[3, 0]))
  np.testing.assert_allclose(
    jax.grad(f_bce)(t[4, 0]), _central_fd(f_bce, t[4, 0]), rtol=1e-6, atol=1e-8
  )
  f_bce2 = jax.jit(lambda tp: discriminator_bce(t[3, 0], tp))
  np.testing.assert_allclose(
    jax.grad(f_bce2)(t[4, 1]),
    _central_fd(f_bce2, t[4, 1]),
    rtol=1e-6,
    atol=1e-8,
  )


def test_bce_matches_numpy_and_is_stable():
  rng = np.random.default_rng(0)
  tj, tp = rng.normal(size=(2, 7)) * 3
  expected = np.mean(np.log1p(np.exp(-tj))) + np.mean(np.log1p(np.exp(tp)))
  np.testing.assert_allclose(discriminator_bce(tj, tp), expected, rtol=1e-5)
  big = discriminator_bce(jnp.array([-200.0]), jnp.array([300.0]))
  np.testing.assert_allclose(big, 500.0, rtol=1e-6)


def test_shared_private_numpy_brute_force():
  rng = np.random.default_rng(1)
  b, e = 6, 4
  u1, u2 = rng.normal(size=(2, b, e))
  t = rng.normal(size=(5, 2, b))
  alpha, beta, gamma, eps = 0.3, 0.6, 0.2, 0.7
  expected = alpha * np.mean([np.sum((u1[k] - u2[k]) ** 2) for k in range(b)])
  for i in range(2):
    expected += np.mean(t[0, i] + (1 - beta) * t[1, i] + t[2, i])
  got = infomae_shared_loss(u1, u2, t[0], t[1], t[2], alpha=alpha, beta=beta)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  expected_p = sum(np.mean(gamma * t[3, i] + eps * t[4, i]) for i in range(2))
  got_p = infomae_private_loss(t[3], t[4], gamma=gamma, eps=eps)
  np.testing.assert_allclose(got_p, expected_p, rtol=1e-5)


def test_bad_shapes_rejected():
  u = jnp.zeros((4, 3))
  t = jnp.zeros((2, 4))
  with pytest.raises(ValueError, match="t_xiui"):
    infomae_shared_loss(u, u, t, jnp.zeros((3, 4)), t)
  with pytest.raises(ValueError, match="u1 and u2"):
    infomae_shared_loss(u, jnp.zeros((4, 2)), t, t, t)
  with pytest.raises(ValueError, match="t_x1x2u"):
    infomae_shared_loss(u, u, jnp.zeros((2, 5)), t, t)
  with pytest.raises(ValueError, match="t_vu"):
    infomae_private_loss(t, jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="batch size"):
    product_of_marginals(jax.random.key(0), jnp.zeros(3), jnp.zeros(4))
  with pytest.raises(ValueError, match="at least one"):
    product_of_marginals(jax.random.key(0))
  with pytest.raises(TypeError, match="t_joint"):
    discriminator_bce(jnp.zeros(3, jnp.int32), jnp.zeros(3))


def test_product_of_marginals_permutes_each_argument_independently(key):
  b = 64
  x = jnp.arange(b, dtype=jnp.float32)[:, None] * jnp.ones((1, 3))
  u = jnp.arange(b, dtype=jnp.int32) + 1000
  xp, up = product_of_marginals(key, x, u)
  assert xp.shape == x.shape and up.shape == u.shape
  # Each output is a permutation of its input: same multiset of rows.
  np.testing.assert_array_equal(np.sort(xp[:, 0]), np.arange(b))
  np.testing.assert_array_equal(np.sort(up), np.arange(b) + 1000)
  # Rows of x stay intact (permutation along the batch axis only).
  np.testing.assert_array_equal(xp, xp[:, :1] * np.ones((1, 3)))
  # Independent permutations: the pairing differs from the joint one.
  paired = np.asarray(up) - 1000 == np.asarray(xp[:, 0])
  assert paired.sum() < b // 4
  # Deterministic per key, different across keys.
  xp2, up2 = product_of_marginals(key, x, u)
  np.testing.assert_array_equal(xp, xp2)
  np.testing.assert_array_equal(up, up2)
  xp3, _ = product_of_marginals(jax.random.fold_in(key, 1), x, u)
  assert not np.array_equal(xp, xp3)
  # The permutations used are those of marginal_permutations.
  perms = marginal_permutations(key, b, 2)
  np.testing.assert_array_equal(xp[:, 0], perms[0])
  np.testing.assert_array_equal(up, perms[1] + 1000)


def test_product_of_marginals_distribution_is_uniform():
  # Over many keys, each (output row, source row) pair is ~uniform, and the
  # two arguments' source rows are uncorrelated.
  b, n = 4, 4000
  keys = jax.random.split(jax.random.key(7), n)
  perms = jax.vmap(lambda k: marginal_permutations(k, b, 2))(keys)
  perms = np.asarray(perms)  # [n, 2, B]
  counts = np.zeros((b, b))
  for r in range(b):
    counts[r] = np.bincount(perms[:, 0, r], minlength=b)
  np.testing.assert_allclose(counts / n, 1 / b, atol=0.03)
  same = np.mean(perms[:, 0, :] == perms[:, 1, :])
  np.testing.assert_allclose(same, 1 / b, atol=0.02)
