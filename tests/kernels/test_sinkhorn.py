"""Tests of sinkhorn_knopp (SPEC §1) and entropic_ot (SPEC §3.4)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels import ot
from msjax.kernels.ot import OTOut, entropic_ot
from msjax.kernels.sinkhorn import sinkhorn_knopp
from tests.conftest import load_tolerances, load_vectors

# Jitted once per (shape, hyperparameters): eager dispatch compiles per op.
_sinkhorn = jax.jit(sinkhorn_knopp, static_argnames=("epsilon", "num_iters"))

SINKHORN_FILES = [
  "sinkhorn_basic",
  "sinkhorn_rect",
  "sinkhorn_params",
  "sinkhorn_batched",
]


def _np_log_sinkhorn(scores, epsilon, num_iters):
  """Independent float64 numpy evaluation of SPEC §1 (log domain)."""

  def lse(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m

  logits = np.asarray(scores, np.float64) / epsilon
  num_rows, num_cols = logits.shape[-2:]
  logits = logits - lse(logits, (-2, -1))
  for _ in range(num_iters):
    logits = logits - lse(logits, -2) - np.log(num_cols)
    logits = logits - lse(logits, -1) - np.log(num_rows)
  return np.exp(logits + np.log(num_rows))


def _np_swav(scores, epsilon, num_iters):
  """SwAV's distributed_sinkhorn (world size 1) in float64 numpy."""
  q = np.exp(np.asarray(scores, np.float64) / epsilon).T
  num_cols, num_rows = q.shape
  q = q / q.sum()
  for _ in range(num_iters):
    q = q / q.sum(axis=1, keepdims=True) / num_cols
    q = q / q.sum(axis=0, keepdims=True) / num_rows
  return (q * num_rows).T


def _hp(vec):
  return dict(
    epsilon=float(vec["hp_epsilon"]), num_iters=int(vec["hp_num_iters"])
  )


# ----------------------------------------------------------------- vectors


@pytest.mark.parametrize("name", SINKHORN_FILES)
def test_vectors_float32(name):
  vec = load_vectors(name)
  tol = load_tolerances()[name]["out_codes"]
  codes = _sinkhorn(vec["x_scores_f32"], **_hp(vec))
  assert codes.dtype == jnp.float32
  np.testing.assert_allclose(codes, vec["out_codes"], **tol)


@pytest.mark.parametrize("name", SINKHORN_FILES)
def test_vectors_float64(name, x64):
  vec = load_vectors(name)
  codes = _sinkhorn(vec["x_scores"], **_hp(vec))
  assert codes.dtype == jnp.float64
  np.testing.assert_allclose(codes, vec["out_codes"], rtol=1e-8, atol=1e-10)


def test_matches_swav_and_numpy_reference(x64):
  rng = np.random.default_rng(1)
  scores = rng.uniform(-1, 1, size=(40, 30))
  expected = _np_swav(scores, 0.05, 4)
  np.testing.assert_allclose(
    _np_log_sinkhorn(scores, 0.05, 4), expected, rtol=1e-10
  )
  np.testing.assert_allclose(
    _sinkhorn(scores, num_iters=4), expected, rtol=1e-9, atol=1e-12
  )


# ------------------------------------------------- fast path vs log domain


@pytest.mark.parametrize(
  "shape,epsilon,num_iters",
  [((200, 9), 0.1, 5), ((3, 2, 33, 17), 0.02, 4)],
  ids=["tall", "batched-small-eps"],
)
def test_fast_path_matches_log_domain(shape, epsilon, num_iters):
  scores = jax.random.uniform(jax.random.key(3), shape, minval=-1, maxval=1)
  hp = dict(epsilon=epsilon, num_iters=num_iters)

  @jax.jit
  def both(scores):
    kernel, out = ot.equipartition_scalings(scores, **hp)
    fast = kernel * out.u[..., None, :] / out.col_den[..., :, None]
    return fast, out.ok, ot.equipartition_log(scores, **hp)

  fast, ok, slow = both(scores)
  assert bool(ok), "these inputs must take the fast path"
  np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
  ref = _np_log_sinkhorn(np.asarray(scores), epsilon, num_iters)
  np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)


def _hard_scores():
  """Scores whose dynamic range sends the problem to the log domain.

  Prototype 0 is far below every row's maximum (column sum ~exp(-500)),
  and row 1 lies ~300 nats below row 0: both underflow float32 ``exp``.
  """
  rng = np.random.default_rng(0)
  scores = rng.uniform(0.0, 1.0, size=(12, 10)).astype(np.float32)
  scores[:, 0] -= 25.0
  scores[1] -= 15.0
  return scores


def test_fallback_triggers_and_matches_reference(x64):
  scores = _hard_scores()
  _, out = jax.jit(
    functools.partial(ot.equipartition_scalings, epsilon=0.05, num_iters=3)
  )(scores)
  assert not bool(out.ok)
  codes = jax.jit(lambda s: sinkhorn_knopp(s, num_iters=3))(scores)
  assert codes.dtype == jnp.float32
  assert np.all(np.isfinite(codes))
  # float32 log-domain arithmetic on logits of magnitude ~500 has an ulp of
  # ~3e-5 nats: that, not the algorithm, bounds the agreement here.
  ref = _np_log_sinkhorn(scores.astype(np.float64), 0.05, 3)
  np.testing.assert_allclose(codes, ref, rtol=1e-4, atol=1e-6)
  # The fallback and the plain log-domain evaluation are the same thing.
  slow = jax.jit(
    functools.partial(ot.equipartition_log, epsilon=0.05, num_iters=3)
  )(jnp.asarray(scores))
  np.testing.assert_allclose(codes, slow, rtol=1e-4, atol=1e-7)


def test_log_potentials_equal_literal_log_domain(x64):
  scores = np.random.default_rng(5).normal(size=(2, 9, 13)) * 20.0
  hp = dict(epsilon=0.05, num_iters=4)
  col, row_max, row_sum = ot.equipartition_potentials(jnp.asarray(scores), **hp)
  codes = np.exp(scores / 0.05 + np.asarray(col) - row_max) / row_sum
  np.testing.assert_allclose(
    codes, _np_log_sinkhorn(scores, **hp), rtol=1e-9, atol=1e-12
  )


@pytest.mark.parametrize("scale", [1.0, 87.0, 300.0, 1000.0])
def test_finite_for_large_scores_over_epsilon(scale):
  rng = np.random.default_rng(int(scale))
  scores = (rng.uniform(-1, 1, size=(48, 20)) * scale).astype(np.float32)
  codes = _sinkhorn(scores, epsilon=1.0, num_iters=3)
  assert codes.dtype == jnp.float32
  assert np.all(np.isfinite(codes))
  np.testing.assert_allclose(codes.sum(-1), 1.0, rtol=1e-5)
  ref = _np_log_sinkhorn(scores.astype(np.float64), 1.0, 3)
  np.testing.assert_allclose(codes, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
  "scale,rtol", [(1.0, 1e-5), (40.0, 1e-3)], ids=["typical", "fallback"]
)
def test_bfloat16_input_gives_float32(scale, rtol):
  scores = jax.random.normal(jax.random.key(1), (32, 24)) * scale
  scores = scores.astype(jnp.bfloat16)
  codes = _sinkhorn(scores, epsilon=0.05)
  assert codes.dtype == jnp.float32
  assert np.all(np.isfinite(codes))
  np.testing.assert_allclose(codes.sum(-1), 1.0, rtol=1e-5)
  # |scores / epsilon| reaches ~2400 at scale 40: float32 logits of that
  # size carry ~1e-4 absolute rounding, which bounds the agreement.
  ref = _np_log_sinkhorn(np.asarray(scores, np.float64), 0.05, 3)
  np.testing.assert_allclose(codes, ref, rtol=rtol, atol=1e-5)


# -------------------------------------------------------------- invariants


def test_marginals_at_convergence():
  scores = jax.random.uniform(jax.random.key(4), (24, 8), minval=-1, maxval=1)
  codes = _sinkhorn(scores, epsilon=0.1, num_iters=300)
  np.testing.assert_allclose(codes.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(codes.sum(-2), 24 / 8, rtol=1e-4)


def test_zero_iterations_is_softmax_times_batch(x64):
  scores = np.random.default_rng(2).normal(size=(6, 5))
  codes = _sinkhorn(scores, epsilon=0.5, num_iters=0)
  expected = np.exp(scores / 0.5) / np.exp(scores / 0.5).sum() * 6
  np.testing.assert_allclose(codes, expected, rtol=1e-10)


def test_gradient_is_exactly_zero():
  scores = jax.random.normal(jax.random.key(5), (16, 12))
  weights = jax.random.normal(jax.random.key(6), (16, 12))
  grad = jax.jit(jax.grad(lambda s: jnp.sum(weights * sinkhorn_knopp(s))))(
    scores
  )
  assert np.all(np.asarray(grad) == 0.0)


def test_jit_equals_eager():
  scores = jax.random.normal(jax.random.key(7), (20, 30))
  eager = sinkhorn_knopp(scores, epsilon=0.07, num_iters=4)
  jitted = jax.jit(lambda s: sinkhorn_knopp(s, epsilon=0.07, num_iters=4))
  np.testing.assert_allclose(jitted(scores), eager, rtol=1e-5, atol=1e-7)


def test_leading_axes_equal_loop_and_vmap():
  scores = jax.random.normal(jax.random.key(8), (2, 3, 10, 7))
  batched = _sinkhorn(scores)
  vmapped = jax.jit(jax.vmap(jax.vmap(sinkhorn_knopp)))(scores)
  scores = np.asarray(scores)
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(
        batched[i, j], _sinkhorn(scores[i, j]), rtol=1e-5, atol=1e-7
      )
  np.testing.assert_allclose(vmapped, batched, rtol=1e-5, atol=1e-7)


def test_one_hard_problem_does_not_change_easy_ones():
  easy = np.asarray(jax.random.uniform(jax.random.key(9), (12, 10)))
  stacked = np.stack([easy, _hard_scores()])
  codes = _sinkhorn(stacked)
  np.testing.assert_allclose(codes[0], _sinkhorn(easy), rtol=1e-5, atol=1e-7)
  assert np.all(np.isfinite(codes))


@pytest.mark.parametrize(
  "kwargs,match",
  [(dict(epsilon=0.0), "epsilon"), (dict(num_iters=-1), "num_iters")],
)
def test_rejects_bad_hyperparameters(kwargs, match):
  with pytest.raises(ValueError, match=match):
    sinkhorn_knopp(jnp.ones((4, 3)), **kwargs)


def test_rejects_bad_rank_and_dtype():
  with pytest.raises(ValueError, match="scores"):
    sinkhorn_knopp(jnp.ones((4,)))
  with pytest.raises(TypeError, match="scores"):
    sinkhorn_knopp(jnp.ones((4, 3), jnp.int32))


# ------------------------------------------------------------- entropic OT


def _ot_batch(vec, suffix):
  cost = jnp.asarray(vec["x_cost" + suffix])
  hp = dict(epsilon=float(vec["hp_eps"]), num_iters=int(vec["hp_iters"]))
  return jax.jit(jax.vmap(lambda a, b: entropic_ot(a, b, cost, **hp)))


def _ot_objective(vec, suffix):
  solve = _ot_batch(vec, suffix)
  return lambda a, b: jnp.sum(solve(a, b).value * vec["r_value"])


def test_ot_vectors_float32():
  vec = load_vectors("ot_eps_basic")
  tol = load_tolerances()["ot_eps_basic"]
  out = _ot_batch(vec, "_f32")(vec["x_a_f32"], vec["x_b_f32"])
  assert isinstance(out, OTOut)
  for field in ("value", "T", "f", "g"):
    np.testing.assert_allclose(
      getattr(out, field), vec["out_" + field], **tol["out_" + field]
    )
  grads = jax.grad(_ot_objective(vec, "_f32"), argnums=(0, 1))(
    vec["x_a_f32"], vec["x_b_f32"]
  )
  np.testing.assert_allclose(grads[0], vec["grad_a"], **tol["grad_a"])
  np.testing.assert_allclose(grads[1], vec["grad_b"], **tol["grad_b"])


def test_ot_vectors_float64(x64):
  vec = load_vectors("ot_eps_basic")
  out = _ot_batch(vec, "")(vec["x_a"], vec["x_b"])
  for field in ("value", "T", "f", "g"):
    np.testing.assert_allclose(
      getattr(out, field), vec["out_" + field], rtol=1e-8, atol=1e-10
    )
  grads = jax.grad(_ot_objective(vec, ""), argnums=(0, 1))(
    vec["x_a"], vec["x_b"]
  )
  np.testing.assert_allclose(grads[0], vec["grad_a"], rtol=1e-8, atol=1e-10)
  np.testing.assert_allclose(grads[1], vec["grad_b"], rtol=1e-8, atol=1e-10)


def test_ot_marginals_at_convergence(x64):
  rng = np.random.default_rng(3)
  a = rng.dirichlet(np.ones(5))
  b = rng.dirichlet(np.ones(5))
  cost = rng.uniform(0, 1, size=(5, 5))
  out = entropic_ot(a, b, cost, epsilon=0.1, num_iters=500)
  np.testing.assert_allclose(out.T.sum(1), a, rtol=1e-9)
  np.testing.assert_allclose(out.T.sum(0), b, rtol=1e-9)
  np.testing.assert_allclose(out.value, np.sum(out.T * cost), rtol=1e-12)


def test_ot_gradient_matches_finite_differences(x64):
  rng = np.random.default_rng(4)
  a = rng.dirichlet(np.ones(4))
  b = rng.dirichlet(np.ones(4))
  cost = rng.uniform(0, 1, size=(4, 4))

  @jax.jit
  def value(a, b, cost):
    return entropic_ot(a, b, cost, epsilon=0.2, num_iters=7).value

  grads = jax.grad(value, argnums=(0, 1, 2))(a, b, cost)
  step = 1e-6
  for arg, grad in enumerate(grads):
    args = [a, b, cost]
    flat = np.asarray(args[arg]).ravel()
    numeric = np.zeros_like(flat)
    for i in range(flat.size):
      hi, lo = flat.copy(), flat.copy()
      hi[i] += step
      lo[i] -= step
      args_hi = list(args)
      args_lo = list(args)
      args_hi[arg] = hi.reshape(args[arg].shape)
      args_lo[arg] = lo.reshape(args[arg].shape)
      numeric[i] = (value(*args_hi) - value(*args_lo)) / (2 * step)
    np.testing.assert_allclose(np.ravel(grad), numeric, rtol=1e-6, atol=1e-8)


def test_ot_jit_equals_eager_and_rejects_bad_shapes():
  a = jnp.full((3,), 1 / 3)
  cost = 1.0 - jnp.eye(3)
  eager = entropic_ot(a, a, cost)
  jitted = jax.jit(entropic_ot)(a, a, cost)
  np.testing.assert_allclose(jitted.T, eager.T, rtol=1e-6)
  with pytest.raises(ValueError, match="cost"):
    entropic_ot(a, a, jnp.ones((3, 4)))
  with pytest.raises(ValueError, match="a"):
    entropic_ot(jnp.ones((2, 3)), a, cost)
  with pytest.raises(ValueError, match="epsilon"):
    entropic_ot(a, a, cost, epsilon=-1.0)
