"""msjax.nn.token_matmul's hand-written backward passes and the closed-form
LayerNorm backward, against JAX's own rules."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.nn import token_matmul as tm
from msjax.nn.swin import LayerNorm, layer_norm
from tests.kernels.test_precision import _dot_precisions

DENSE_DIMS = (((2,), (0,)), ((), ()))


def _dots(hlo: str) -> list[tuple[str, str]]:
  """(lhs contracting dims, rhs contracting dims) of every dot in ``hlo``."""
  return re.findall(
    r" dot\([^)]*\),(?: lhs_batch_dims=\{[\d,]*\},)? lhs_contracting_dims="
    r"\{([\d,]*)\},(?: rhs_batch_dims=\{[\d,]*\},)? rhs_contracting_dims="
    r"\{([\d,]*)\}",
    hlo,
  )


@pytest.mark.parametrize("d_in,d_out", [(6, 10), (10, 6)])
def test_token_dense_equals_dense_in_value_and_gradients(x64, d_in, d_out):
  x = jax.random.normal(jax.random.key(0), (3, 7, d_in), jnp.float64)
  plain, mine = nn.Dense(d_out), tm.TokenDense(d_out)
  params = plain.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, mine.init(jax.random.key(1), x)) == (
    jax.tree.map(jnp.shape, params)
  )
  target = jax.random.normal(jax.random.key(2), (3, 7, d_out), jnp.float64)

  def loss(module, params, x):
    return jnp.sum(jnp.sin(module.apply(params, x)) * target)

  want = jax.value_and_grad(lambda p, x: loss(plain, p, x), (0, 1))(params, x)
  got = jax.value_and_grad(lambda p, x: loss(mine, p, x), (0, 1))(params, x)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
    got,
    want,
  )


@pytest.mark.parametrize("d_in,d_out", [(5, 9), (9, 5)])
def test_weight_gradient_paths_equal_the_transposed_product(x64, d_in, d_out):
  rng = np.random.default_rng(0)
  x2, g2 = rng.normal(size=(40, d_in)), rng.normal(size=(40, d_out))
  want = x2.T @ g2
  for path in (tm.weight_grad_cpu, tm.weight_grad_default):
    np.testing.assert_allclose(path(x2, g2, None), want, rtol=1e-12)


def test_window_logits_value_and_gradients(x64):
  kq, kk, kg = jax.random.split(jax.random.key(3), 3)
  q = jax.random.normal(kq, (2, 3, 9, 4, 5), jnp.float64)
  k = jax.random.normal(kk, (2, 3, 9, 4, 5), jnp.float64)
  weight = jax.random.normal(kg, (2, 3, 4, 9, 9), jnp.float64)

  def loss(fn, q, k):
    return jnp.sum(jnp.tanh(fn(q, k)) * weight)

  einsum = lambda q, k: jnp.einsum("bwqhc,bwkhc->bwhqk", q, k)  # noqa: E731
  want = jax.value_and_grad(lambda q, k: loss(einsum, q, k), (0, 1))(q, k)
  got = jax.value_and_grad(lambda q, k: loss(tm.window_logits, q, k), (0, 1))(
    q, k
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
    got,
    want,
  )
  # Both platform paths of dk, against numpy.
  g = np.asarray(weight)
  want_dk = np.einsum("bwhqk,bwqhc->bwkhc", g, np.asarray(q))
  for path in (tm.key_grad_cpu, tm.key_grad_default):
    np.testing.assert_allclose(path(weight, q), want_dk, rtol=1e-12)


def test_cpu_backward_products_contract_the_minor_axis():
  """On CPU no product of the backward passes contracts a leading axis (the
  form XLA gives to Eigen); JAX's own rules do produce one."""
  x = jax.random.normal(jax.random.key(0), (4, 128, 32))
  w = jax.random.normal(jax.random.key(1), (32, 96))

  def dense_loss(dot_general):
    return lambda x, w: jnp.sum(jnp.sin(dot_general(x, w, DENSE_DIMS)))

  def compiled_dots(loss, *args):
    grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))
    return _dots(grad.lower(*args).compile().as_text())

  plain = compiled_dots(dense_loss(jax.lax.dot_general), x, w)
  mine = compiled_dots(dense_loss(tm.token_dot_general), x, w)
  assert ("0", "1") in plain or ("0", "0") in plain  # the control
  assert len(mine) == 3 and all(lhs == "1" for lhs, _ in mine), mine

  q = jax.random.normal(jax.random.key(2), (2, 8, 9, 4, 16))
  k = jax.random.normal(jax.random.key(3), (2, 8, 9, 4, 16))
  einsum = lambda q, k: jnp.einsum("bwqhc,bwkhc->bwhqk", q, k)  # noqa: E731
  plain = compiled_dots(lambda q, k: jnp.sum(jnp.sin(einsum(q, k))), q, k)
  mine = compiled_dots(
    lambda q, k: jnp.sum(jnp.sin(tm.window_logits(q, k))), q, k
  )
  assert any(lhs != "4" for lhs, _ in plain)  # the control
  assert len(mine) == 3 and all(lhs == "4" for lhs, _ in mine), mine


def test_token_dot_general_keeps_the_requested_precision():
  x = jnp.ones((2, 3, 4))
  module = tm.TokenDense(5, precision=jax.lax.Precision.HIGHEST)
  params = module.init(jax.random.key(0), x)
  jaxpr = jax.make_jaxpr(
    jax.grad(lambda p, x: jnp.sum(module.apply(p, x) ** 2), (0, 1))
  )(params, x)
  precisions = _dot_precisions(jaxpr.jaxpr)
  highest = jax.lax.Precision.HIGHEST
  # forward, dx, and dw in each platform branch
  assert len(precisions) >= 3
  assert all(p == (highest, highest) for p in precisions), precisions


def test_token_dot_general_rejects_other_products():
  x, w = jnp.ones((2, 3)), jnp.ones((3, 4))
  with pytest.raises(ValueError, match="flax Dense"):
    tm.token_dot_general(x, w, (((0,), (0,)), ((), ())))
  with pytest.raises(ValueError, match="flax Dense"):
    tm.token_dot_general(jnp.ones((2, 2, 3)), jnp.ones((2, 3, 4)), DENSE_DIMS)
  with pytest.raises(ValueError, match="preferred_element_type"):
    tm.token_dot_general(x, w, (((1,), (0,)), ((), ())), None, jnp.float32)


def test_layer_norm_backward_equals_autodiff_of_the_forward(x64):
  kx, ks, kb, kt = jax.random.split(jax.random.key(4), 4)
  x = 3.0 + 2.0 * jax.random.normal(kx, (4, 5, 16), jnp.float64)
  scale = jax.random.normal(ks, (16,), jnp.float64)
  bias = jax.random.normal(kb, (16,), jnp.float64)
  target = jax.random.normal(kt, (4, 5, 16), jnp.float64)

  def plain(x, scale, bias):
    centred = x - jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(centred**2, -1, keepdims=True)
    return centred / jnp.sqrt(var + 1e-5) * scale + bias

  def loss(fn, *args):
    return jnp.sum(jnp.sin(fn(*args)) * target)

  args = (x, scale, bias)
  want = jax.value_and_grad(lambda *a: loss(plain, *a), (0, 1, 2))(*args)
  got = jax.value_and_grad(
    lambda *a: loss(lambda *b: layer_norm(*b, 1e-5), *a), (0, 1, 2)
  )(*args)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
    got,
    want,
  )
  # The module routes through it (same values as flax's LayerNorm forward is
  # checked in test_swin).
  params = {"params": {"scale": scale, "bias": bias}}
  np.testing.assert_allclose(
    LayerNorm(1e-5).apply(params, x), plain(*args), rtol=1e-12
  )
