"""Tests for msjax.kernels.temporal (SPEC §4.3 temporal locality)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.temporal import temporal_locality
from tests.conftest import load_tolerances, load_vectors

F64_TOL = {"rtol": 1e-8, "atol": 1e-10}


def _numpy_reference(h, margin, eta, exclude_self_pairs):
  s, length, _ = h.shape
  cmat = np.zeros((s, s))
  for a in range(s):
    for c in range(s):
      total, count = 0.0, 0
      for i in range(length):
        for j in range(length):
          if exclude_self_pairs and a == c and i == j:
            continue
          total += np.sqrt(np.sum((h[a, i] - h[c, j]) ** 2))
          count += 1
      cmat[a, c] = total / count
  loss = 0.0
  for a in range(s):
    for c in range(s):
      if a != c:
        loss += max(cmat[a, a] - cmat[a, c] + margin, 0.0)
  return eta * loss / (s * (s - 1)), cmat


@pytest.mark.parametrize("float64", [False, True], ids=["f32", "f64"])
def test_vectors(float64, request):
  if float64:
    request.getfixturevalue("x64")
  data = load_vectors("temporal_basic")
  h = jnp.asarray(data["x_h" if float64 else "x_h_f32"])
  hp = {"margin": float(data["hp_margin"]), "eta": float(data["hp_eta"])}

  def f(h):
    loss, cmat = temporal_locality(h, **hp)
    return loss * data["r_loss"], (loss, cmat)

  (_, (loss, cmat)), grad = jax.jit(jax.value_and_grad(f, has_aux=True))(h)
  tols = load_tolerances()["temporal_basic"]
  for key, got in (("out_loss", loss), ("out_cmat", cmat), ("grad_h", grad)):
    assert got.dtype == h.dtype
    tol = F64_TOL if float64 else tols[key]
    np.testing.assert_allclose(got, data[key], **tol, err_msg=key)


@pytest.mark.parametrize("exclude_self_pairs", [False, True])
def test_matches_numpy_loops(exclude_self_pairs, x64):
  rng = np.random.default_rng(0)
  h = rng.normal(size=(4, 3, 5)) * 0.4
  # Make some hinges active and some inactive.
  h[1] += 0.8
  loss, cmat = temporal_locality(
    h, margin=0.7, eta=1.3, exclude_self_pairs=exclude_self_pairs
  )
  ref_loss, ref_cmat = _numpy_reference(h, 0.7, 1.3, exclude_self_pairs)
  np.testing.assert_allclose(cmat, ref_cmat, rtol=1e-12)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
  assert 0.0 < ref_loss


@pytest.mark.parametrize("exclude_self_pairs", [False, True])
def test_finite_differences(exclude_self_pairs, x64):
  rng = np.random.default_rng(1)
  h = rng.normal(size=(3, 2, 3))
  f = jax.jit(
    lambda h: temporal_locality(
      h, margin=1.5, exclude_self_pairs=exclude_self_pairs
    )[0]
  )
  grad = np.asarray(jax.grad(f)(jnp.asarray(h)))
  fd = np.zeros_like(h)
  eps = 1e-6
  for idx in np.ndindex(h.shape):
    hp, hm = h.copy(), h.copy()
    hp[idx] += eps
    hm[idx] -= eps
    fd[idx] = (float(f(hp)) - float(f(hm))) / (2 * eps)
  assert np.abs(grad).max() > 1e-3
  np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_zero_distances_have_finite_zero_gradient():
  # All windows identical: every distance is 0, the gradient must be 0.
  h = jnp.ones((3, 4, 5))
  (loss, cmat), grad = jax.jit(
    jax.value_and_grad(temporal_locality, has_aux=True)
  )(h)
  np.testing.assert_allclose(loss, 1.0)
  np.testing.assert_array_equal(cmat, 0.0)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad, 0.0)


def test_bfloat16_computed_in_float32():
  rng = np.random.default_rng(2)
  h = rng.normal(size=(3, 2, 4)).astype(np.float32)
  loss, cmat = temporal_locality(jnp.asarray(h, jnp.bfloat16))
  assert loss.dtype == jnp.float32 and cmat.dtype == jnp.float32
  ref, _ = _numpy_reference(
    np.asarray(jnp.asarray(h, jnp.bfloat16).astype(jnp.float32), np.float64),
    1.0,
    1.0,
    False,
  )
  np.testing.assert_allclose(loss, ref, rtol=1e-5)


def test_bad_input_rejected():
  with pytest.raises(ValueError, match=r"\[S, L, E\]"):
    temporal_locality(jnp.zeros((4, 3)))
  with pytest.raises(ValueError, match="S >= 2"):
    temporal_locality(jnp.zeros((1, 3, 2)))
  with pytest.raises(ValueError, match="L >= 2"):
    temporal_locality(jnp.zeros((3, 1, 2)), exclude_self_pairs=True)
