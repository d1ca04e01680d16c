"""Tests of Pro-FD and the batched OT solver of msjax.kernels.ot (§3.4)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels import ot
from msjax.kernels.distillation import pro_fd
from msjax.kernels.ot import batched_entropic_ot, entropic_ot
from tests.conftest import load_vectors
from tests.kernels import _vectors
from tests.kernels._vectors import assert_vectors, central_fd, suffix, unit

precision = _vectors.precision  # The shared f32/f64 fixture.

_HP = ("tau_fd", "epsilon", "num_iters")
_pro_fd = jax.jit(pro_fd, static_argnames=_HP)
_batched = jax.jit(
  batched_entropic_ot, static_argnames=("epsilon", "num_iters")
)


@functools.partial(jax.jit, static_argnames=("epsilon", "num_iters"))
def _vmapped(a, b, cost, *, epsilon, num_iters):
  """E1's single-problem entropic_ot, vmapped over the rows of a and b."""
  solve = functools.partial(entropic_ot, epsilon=epsilon, num_iters=num_iters)
  return jax.vmap(solve, in_axes=(0, 0, None))(a, b, cost)


def _random_fd(seed, batch=6, num_classes=4, dim=5):
  rng = np.random.default_rng(seed)
  z = unit(rng.normal(size=(batch, dim)))
  protos = unit(rng.normal(size=(num_classes, dim)))
  labels = rng.integers(0, num_classes, batch).astype(np.int32)
  return z, labels, protos


def _random_histograms(seed, num=5, num_classes=4, spread=1.0):
  rng = np.random.default_rng(seed)
  a = rng.dirichlet(np.ones(num_classes), size=num)
  b = rng.dirichlet(np.ones(num_classes), size=num)
  protos = unit(rng.normal(size=(num_classes, 3)))
  cost = spread * (1.0 - protos @ protos.T)
  return a, b, cost


# ----------------------------------------------------------------- vectors


@pytest.mark.parametrize("name", ["pro_fd_basic", "pro_fd_tau03"])
def test_pro_fd_vectors(precision, name):
  vec = load_vectors(name)
  sfx = suffix(precision)
  hp = dict(
    tau_fd=float(vec["hp_tau_fd"]),
    epsilon=float(vec["hp_eps"]),
    num_iters=int(vec["hp_iters"]),
  )
  (loss, aux), grads = jax.value_and_grad(
    lambda z, p: _pro_fd(z, vec["x_y"], p, **hp), argnums=(0, 1), has_aux=True
  )(vec["x_z_fus" + sfx], vec["x_P" + sfx])
  actual = {f"out_{k}": v for k, v in aux._asdict().items()}
  # pro_fd uses its inputs as given: compare with grad_, not gradtan_.
  actual.update(out_loss=loss, grad_z_fus=grads[0], grad_P=grads[1])
  assert_vectors(name, precision, actual)


def test_batched_ot_vectors(precision):
  vec = load_vectors("ot_eps_basic")
  sfx = suffix(precision)
  hp = dict(epsilon=float(vec["hp_eps"]), num_iters=int(vec["hp_iters"]))
  cost = vec["x_cost" + sfx]

  def weighted(a, b):
    out = _batched(a, b, cost, **hp)
    return jnp.sum(vec["r_value"] * out.value), out

  (_, out), grads = jax.value_and_grad(weighted, argnums=(0, 1), has_aux=True)(
    vec["x_a" + sfx], vec["x_b" + sfx]
  )
  actual = {f"out_{k}": getattr(out, k) for k in ("value", "T", "f", "g")}
  actual.update(grad_a=grads[0], grad_b=grads[1])
  assert_vectors("ot_eps_basic", precision, actual)


# ------------------------- both evaluations == the SPEC's updates, as written


def _spec_updates(a, b, cost, epsilon, num_iters):
  """SPEC §3.4's updates, batched by broadcasting (independent of msjax)."""
  lse = jax.scipy.special.logsumexp
  f = jnp.zeros_like(a)
  g = jnp.zeros_like(b)
  for _ in range(num_iters):
    f = epsilon * jnp.log(a) - epsilon * lse(
      (g[:, None, :] - cost) / epsilon, axis=2
    )
    g = epsilon * jnp.log(b) - epsilon * lse(
      (f[:, :, None] - cost) / epsilon, axis=1
    )
  plan = jnp.exp((f[:, :, None] + g[:, None, :] - cost) / epsilon)
  return f, g, jnp.sum(plan * cost, axis=(1, 2))


def _kernel_domain(log_a, log_b, cost, epsilon, num_iters):
  (pot_f, pot_g, value), ok = ot._ot_kernel_domain(
    log_a, log_b, cost, epsilon, num_iters
  )
  assert bool(ok)
  return pot_f, pot_g, value


@pytest.mark.parametrize(
  "evaluation",
  [_kernel_domain, ot._ot_log_domain, None],
  ids=["kernel", "log", "auto"],
)
def test_solver_equals_spec_updates(x64, evaluation):
  a, b, cost = _random_histograms(1)
  weights = np.arange(1, 6)

  def solver(a, b, cost):
    if evaluation is None:
      out = ot.shared_cost_ot(
        jnp.log(a), jnp.log(b), cost, epsilon=0.05, num_iters=7
      )
      pot_f, pot_g, value = out.f / 0.05, out.g / 0.05, out.value
    else:
      pot_f, pot_g, value = evaluation(jnp.log(a), jnp.log(b), cost, 0.05, 7)
    return jnp.sum(value * weights), (0.05 * pot_f, 0.05 * pot_g, value)

  def reference(a, b, cost):
    f, g, value = _spec_updates(a, b, cost, 0.05, 7)
    return jnp.sum(value * weights), (f, g, value)

  (_, out), grads = jax.value_and_grad(solver, argnums=(0, 1, 2), has_aux=True)(
    a, b, cost
  )
  (_, ref), ref_grads = jax.value_and_grad(
    reference, argnums=(0, 1, 2), has_aux=True
  )(a, b, cost)
  for got, want in zip(out, ref, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
  for got, want in zip(grads, ref_grads, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_batched_equals_vmapped_single_problem():
  a, b, cost = (np.asarray(x, np.float32) for x in _random_histograms(7))
  out = _batched(a, b, cost, epsilon=0.1, num_iters=20)
  ref = _vmapped(a, b, cost, epsilon=0.1, num_iters=20)
  for got, want in zip(out, ref, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_falls_back_to_log_domain_where_the_kernel_underflows(x64):
  # Target class 0 costs 300 more than any other from every source: its
  # column of exp(-cost / eps) lies ~3000 nats below every row's maximum,
  # beyond float64's range, so the kernel domain is inexact. (Pro-FD's
  # costs 1 - cos have a zero diagonal, the row maxima: the kernel domain
  # stays exact there even for spreads of thousands of nats.)
  a, b, cost = _random_histograms(2)
  cost = cost.copy()
  cost[:, 0] += 300.0
  _, ok = ot._ot_kernel_domain(jnp.log(a), jnp.log(b), cost, 0.1, 6)
  assert not bool(ok)

  def auto(b):
    out = ot.shared_cost_ot(
      jnp.log(a), jnp.log(b), cost, epsilon=0.1, num_iters=6
    )
    return jnp.sum(out.value)

  def ref(b):
    return jnp.sum(_spec_updates(a, b, cost, 0.1, 6)[2])

  value, grad = jax.value_and_grad(auto)(b)
  ref_value, ref_grad = jax.value_and_grad(ref)(b)
  np.testing.assert_allclose(value, ref_value, rtol=1e-9)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-7, atol=1e-9)


def test_fallback_in_chunks_equals_spec_updates(x64, monkeypatch):
  # Seven problems, at most two per chunk (the last chunk padded): values
  # and gradients of a, b and the shared cost equal the SPEC updates.
  a, b, cost = _random_histograms(4, num=7)
  cost = cost.copy()
  cost[:, 0] += 300.0
  monkeypatch.setattr(ot, "_FALLBACK_BYTES", 2 * (4 * 6 + 4) * 16 * 8)
  assert ot._fallback_chunk(7, 4, 6, jnp.float64, backward=True) == 2
  weights = np.arange(1, 8)

  def auto(a, b, cost):
    out = ot.shared_cost_ot(
      jnp.log(a), jnp.log(b), cost, epsilon=0.1, num_iters=6
    )
    return jnp.sum(out.value * weights), out.value

  def ref(a, b, cost):
    value = _spec_updates(a, b, cost, 0.1, 6)[2]
    return jnp.sum(value * weights), value

  (_, value), grads = jax.value_and_grad(auto, (0, 1, 2), has_aux=True)(
    a, b, cost
  )
  (_, ref_value), ref_grads = jax.value_and_grad(ref, (0, 1, 2), has_aux=True)(
    a, b, cost
  )
  np.testing.assert_allclose(value, ref_value, rtol=1e-9)
  for got, want in zip(grads, ref_grads, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
  # cost_grad=False: no cotangent reaches the cost on the fallback either.
  no_cost = jax.grad(
    lambda c: jnp.sum(
      ot.shared_cost_ot(
        jnp.log(a), jnp.log(b), c, epsilon=0.1, num_iters=6, cost_grad=False
      ).value
    )
  )(cost)
  np.testing.assert_array_equal(no_cost, 0.0)


def test_fallback_reserves_little_memory():
  # XLA reserves a cond branch's temporaries on every call: the log-domain
  # fallback of the whole batch reserved 431 MB per Pro-FD step at
  # B = 256, C = 100 (44 MB at C = 31) before it was solved in chunks.
  rng = np.random.default_rng(0)
  z = unit(rng.normal(size=(256, 128))).astype(np.float32)
  protos = unit(rng.normal(size=(100, 128))).astype(np.float32)
  labels = rng.integers(0, 100, 256).astype(np.int32)
  step = jax.jit(
    jax.value_and_grad(lambda z, p: pro_fd(z, labels, p)[0], argnums=(0, 1))
  )
  memory = step.lower(z, protos).compile().memory_analysis()
  assert memory.temp_size_in_bytes < 32e6, memory.temp_size_in_bytes


def test_errors_and_converged_report_the_row_marginals(x64):
  a, b, cost = _random_histograms(3)
  for num_iters, converged in ((1, False), (300, True)):
    out = batched_entropic_ot(a, b, cost, epsilon=0.05, num_iters=num_iters)
    # Columns are exact after the last (g) update; rows carry the error.
    np.testing.assert_allclose(out.T.sum(axis=1), b, rtol=1e-9)
    errors = np.abs(np.asarray(out.T).sum(axis=2) - a).sum(axis=1)
    np.testing.assert_allclose(out.errors, errors, rtol=1e-6, atol=1e-12)
    assert np.all(np.asarray(out.converged) == converged), out.errors
  grad = jax.grad(lambda b: jnp.sum(batched_entropic_ot(a, b, cost).errors))(b)
  np.testing.assert_array_equal(grad, 0.0)


# ------------------------------------------------------------- invariants


def test_psi_are_distributions_and_reference_is_stopped():
  z, labels, protos = (
    np.asarray(x, np.float32) if x.dtype != np.int32 else x
    for x in _random_fd(3)
  )
  loss, aux = _pro_fd(z, labels, protos, num_iters=5)
  np.testing.assert_allclose(np.sum(aux.psi_ref, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.sum(aux.psi_fus, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(loss, np.mean(aux.per_sample), rtol=1e-6)
  np.testing.assert_allclose(aux.cost, 1.0 - protos @ protos.T, atol=1e-6)

  # psi_ref and cost are built from sg(P): no gradient reaches P through them
  def part(protos, field):
    return jnp.sum(getattr(_pro_fd(z, labels, protos, num_iters=5)[1], field))

  for field in ("psi_ref", "cost"):
    grad = jax.grad(part)(protos, field)
    np.testing.assert_array_equal(grad, 0.0)
  grad = jax.grad(lambda p: _pro_fd(z, labels, p, num_iters=5)[0])(protos)
  assert np.count_nonzero(grad) > 0


def test_perfect_match_costs_little():
  # z_fus equal to its class prototype: psi_fus == psi_ref, OT ~ entropy only
  z, labels, protos = _random_fd(4)
  z = protos[labels].astype(np.float32)
  protos = protos.astype(np.float32)
  _, aux = _pro_fd(z, labels, protos, tau_fd=0.3, num_iters=5)
  np.testing.assert_allclose(aux.psi_fus, aux.psi_ref, rtol=1e-5, atol=1e-6)
  far = _pro_fd(-z, labels, protos, tau_fd=0.3, num_iters=5)[1].per_sample
  assert np.all(np.asarray(aux.per_sample) < np.asarray(far))


# ------------------------------------------------------ finite differences


def test_pro_fd_finite_differences_z(x64):
  z, labels, protos = _random_fd(5)
  central_fd(
    lambda z: _pro_fd(z, labels, protos, tau_fd=0.5, num_iters=5)[0],
    [z],
    0,
    atol=1e-9,
  )


def test_pro_fd_finite_differences_prototypes(x64):
  # P also enters psi_ref and cost under sg: the finite difference is taken
  # on an independent evaluation (E1's entropic_ot) with those held at P0.
  z, labels, protos0 = _random_fd(6)
  gram = protos0 @ protos0.T
  psi_ref = jax.nn.softmax(gram[labels] / 0.5, axis=1)

  def held(protos):
    psi_fus = jax.nn.softmax(z @ protos.T / 0.5, axis=1)
    out = _vmapped(psi_ref, psi_fus, 1.0 - gram, epsilon=0.1, num_iters=5)
    return jnp.mean(out.value)

  direction = np.random.default_rng(0).normal(size=protos0.shape)
  step = 1e-6
  numeric = (
    held(protos0 + step * direction) - held(protos0 - step * direction)
  ) / (2 * step)
  grad = jax.grad(lambda p: _pro_fd(z, labels, p, tau_fd=0.5, num_iters=5)[0])(
    protos0
  )
  np.testing.assert_allclose(
    np.sum(grad * direction), numeric, rtol=1e-6, atol=1e-9
  )


# ------------------------------------------------------- dtypes, errors


def test_bfloat16_inputs_give_finite_float32():
  vec = load_vectors("pro_fd_basic")
  z = jnp.asarray(vec["x_z_fus_f32"], jnp.bfloat16)
  protos = jnp.asarray(vec["x_P_f32"], jnp.bfloat16)
  loss, aux = _pro_fd(z, vec["x_y"], protos)
  for value in (loss, *aux):
    assert value.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(value)))


_Z = np.ones((4, 3), np.float32)
_P = np.ones((5, 3), np.float32)
_Y = np.zeros(4, np.int32)


@pytest.mark.parametrize(
  ("call", "match"),
  [
    (lambda: pro_fd(_Z[None], _Y, _P), "z_fus must have shape"),
    (lambda: pro_fd(_Z, _Y, _P[:, :2]), "prototypes"),
    (lambda: pro_fd(_Z, _Y[:2], _P), "labels"),
    (lambda: pro_fd(_Z, _Y * 1.0, _P), "integer"),
    (lambda: pro_fd(_Z, _Y, _P, tau_fd=0.0), "tau_fd"),
    (lambda: pro_fd(_Z, _Y, _P, epsilon=-1.0), "epsilon"),
    (lambda: pro_fd(_Z, _Y, _P, num_iters=0), "num_iters"),
    (lambda: batched_entropic_ot(_Z, _Z, np.ones((4, 4))), "cost"),
    (
      lambda: batched_entropic_ot(_Z[0], _Z[0], np.ones((3, 3))),
      "a must have shape",
    ),
  ],
)
def test_bad_inputs_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
