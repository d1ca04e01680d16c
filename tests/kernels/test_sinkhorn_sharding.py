"""Data-parallel equivalence of sinkhorn_knopp and mpp_loss on 8 CPU devices.

Sharded ``jit`` (``NamedSharding`` over a ``("data",)`` mesh, no collectives
written by hand) and ``jax.shard_map`` with ``axis_name`` must both give the
single-device result on the whole (global) batch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from msjax.kernels import ot
from msjax.kernels.prototypes import mpp_loss
from msjax.kernels.sinkhorn import sinkhorn_knopp
from tests.conftest import load_vectors

NUM_DEVICES = 8


def _mesh(axis_type):
  if jax.device_count() < NUM_DEVICES:
    pytest.fail(f"needs {NUM_DEVICES} devices (tests/conftest.py sets them)")
  return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(axis_type,))


def _batch_spec(ndim, batch_axis):
  spec = [None] * ndim
  spec[batch_axis] = "data"
  return P(*spec)


@pytest.mark.parametrize("name", ["sinkhorn_basic", "sinkhorn_batched"])
@pytest.mark.parametrize(
  "axis_type", [AxisType.Explicit, AxisType.Auto], ids=["explicit", "auto"]
)
def test_sinkhorn_sharded_jit(name, axis_type):
  vec = load_vectors(name)
  scores = vec["x_scores_f32"]
  mesh = _mesh(axis_type)
  sharding = NamedSharding(mesh, _batch_spec(scores.ndim, -2))
  sharded = jax.device_put(scores, sharding)
  hp = dict(
    epsilon=float(vec["hp_epsilon"]), num_iters=int(vec["hp_num_iters"])
  )
  with jax.set_mesh(mesh):
    codes = jax.jit(functools.partial(sinkhorn_knopp, **hp))(sharded)
  single = jax.jit(functools.partial(sinkhorn_knopp, **hp))(scores)
  np.testing.assert_allclose(codes, single, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(codes, vec["out_codes"], rtol=1e-4, atol=1e-5)


def _shard_map_sinkhorn(scores, mesh, **hp):
  spec = _batch_spec(scores.ndim, -2)
  fn = jax.shard_map(
    functools.partial(sinkhorn_knopp, axis_name="data", **hp),
    mesh=mesh,
    in_specs=spec,
    out_specs=spec,
  )
  return jax.jit(fn)(jax.device_put(scores, NamedSharding(mesh, spec)))


@pytest.mark.parametrize("name", ["sinkhorn_basic", "sinkhorn_batched"])
def test_sinkhorn_shard_map_axis_name(name):
  vec = load_vectors(name)
  scores = vec["x_scores_f32"]
  hp = dict(
    epsilon=float(vec["hp_epsilon"]), num_iters=int(vec["hp_num_iters"])
  )
  codes = _shard_map_sinkhorn(scores, _mesh(AxisType.Explicit), **hp)
  single = jax.jit(functools.partial(sinkhorn_knopp, **hp))(scores)
  np.testing.assert_allclose(codes, single, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(codes, vec["out_codes"], rtol=1e-4, atol=1e-5)


def test_sinkhorn_shard_map_fallback_is_agreed_across_devices():
  # Rows 8..15 (device 2 and 3) lie ~300 nats below the rest: the fast path
  # fails on the global problem, so every device must take the log domain.
  rng = np.random.default_rng(0)
  scores = rng.uniform(0, 1, size=(32, 10)).astype(np.float32)
  scores[8:16] -= 15.0
  scores[:, 3] -= 25.0
  _, scalings = ot.equipartition_scalings(
    jnp.asarray(scores), epsilon=0.05, num_iters=3
  )
  assert not bool(scalings.ok)
  codes = _shard_map_sinkhorn(
    scores, _mesh(AxisType.Explicit), epsilon=0.05, num_iters=3
  )
  single = jax.jit(sinkhorn_knopp)(scores)
  assert np.all(np.isfinite(codes))
  np.testing.assert_allclose(codes, single, rtol=1e-4, atol=1e-7)


def _mpp_inputs():
  vec = load_vectors("mpp_basic")
  hp = dict(
    tau=float(vec["hp_tau"]),
    alpha=float(vec["hp_alpha"]),
    epsilon=float(vec["hp_epsilon"]),
    num_iters=int(vec["hp_num_iters"]),
  )
  return vec, vec["x_z_f32"], vec["x_c_f32"], hp


def test_mpp_shard_map_axis_name():
  vec, z, c, hp = _mpp_inputs()
  mesh = _mesh(AxisType.Explicit)

  def local(z, c):
    loss, aux = mpp_loss(z, c, axis_name="data", **hp)
    return loss, aux.q, aux.pair_ce

  fn = jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(P(None, None, "data"), P()),
      out_specs=(P(), P(None, None, "data"), P()),
    )
  )
  loss, q, pair_ce = fn(
    jax.device_put(z, NamedSharding(mesh, P(None, None, "data"))),
    jax.device_put(c, NamedSharding(mesh, P())),
  )
  single_loss, single_aux = jax.jit(functools.partial(mpp_loss, **hp))(z, c)
  np.testing.assert_allclose(loss, single_loss, rtol=1e-5)
  np.testing.assert_allclose(q, single_aux.q, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(pair_ce, single_aux.pair_ce, rtol=1e-5)
  np.testing.assert_allclose(loss, vec["out_loss"], rtol=1e-4, atol=1e-5)

  # Gradients of the replicated loss; shard_map's varying-axis typing sums
  # the replicated prototypes' cotangent over devices by itself.
  def local_grad(z, c):
    return jax.grad(lambda z, c: local(z, c)[0], argnums=(0, 1))(z, c)

  grad_fn = jax.jit(
    jax.shard_map(
      local_grad,
      mesh=mesh,
      in_specs=(P(None, None, "data"), P()),
      out_specs=(P(None, None, "data"), P()),
    )
  )
  grad_z, grad_c = grad_fn(
    jax.device_put(z, NamedSharding(mesh, P(None, None, "data"))),
    jax.device_put(c, NamedSharding(mesh, P())),
  )
  np.testing.assert_allclose(grad_z, vec["grad_z"], rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(grad_c, vec["grad_c"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
  "axis_type", [AxisType.Explicit, AxisType.Auto], ids=["explicit", "auto"]
)
def test_mpp_sharded_jit(axis_type):
  vec, z, c, hp = _mpp_inputs()
  mesh = _mesh(axis_type)
  z_sharded = jax.device_put(z, NamedSharding(mesh, P(None, None, "data")))
  c_repl = jax.device_put(c, NamedSharding(mesh, P()))
  loss_fn = functools.partial(mpp_loss, **hp)
  # Explicit axes work with and without a mesh context.
  (loss, _), grads = jax.jit(
    jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
  )(z_sharded, c_repl)
  single_loss, _ = jax.jit(loss_fn)(z, c)
  np.testing.assert_allclose(loss, single_loss, rtol=1e-5)
  np.testing.assert_allclose(grads[0], vec["grad_z"], rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(grads[1], vec["grad_c"], rtol=1e-3, atol=1e-6)
