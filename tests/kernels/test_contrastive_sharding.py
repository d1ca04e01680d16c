"""Data-parallel equivalence of the contrastive kernels on 8 CPU devices.

The global-batch loss (and its gradients) must not depend on how the batch is
split: sharded ``jit`` on a ``("data",)`` mesh (Explicit and Auto axis types)
and ``jax.shard_map`` with ``axis_name`` must both equal one device on the
whole batch. E2's other kernels (SaMoBal selection/inference, Pro-FD, FC/RS)
must also run under Explicit-axis sharded ``jit`` with unchanged results.
"""

import functools

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from msjax.kernels.contrastive import info_nce, nt_xent, pro_ucl
from msjax.kernels.distillation import pro_fd
from msjax.kernels.geometry import fc_rs
from msjax.kernels.selection import samobal_infer, samobal_select

NUM_DEVICES = 8
BATCH = 16  # 2 per device
RTOL, ATOL = 1e-5, 1e-7


def _problem(name):
  """(loss function of the differentiable args, args, batch specs, labels)."""
  rng = np.random.default_rng(0)
  if name == "pro_ucl":
    z = rng.normal(size=(2, BATCH, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    protos = rng.normal(size=(5, 8)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=-1, keepdims=True)
    labels = rng.integers(0, 4, BATCH).astype(np.int32)  # class 4 absent

    def loss(z, protos, labels, axis_name=None):
      return pro_ucl(z, labels, protos, tau=0.1, axis_name=axis_name)[0]

    return loss, (z, protos, labels), (P(None, "data"), P(), P("data"))
  a, b = rng.normal(size=(2, BATCH, 8)).astype(np.float32)
  kernel = {"info_nce": info_nce, "nt_xent": nt_xent}[name]

  def loss(a, b, axis_name=None):
    return kernel(a, b, tau=0.1, axis_name=axis_name)

  return loss, (a, b), (P("data"), P("data"))


def _value_and_grads(loss, args):
  return jax.value_and_grad(loss, argnums=(0, 1))(*args)


def _assert_same(actual, expected):
  (value, grads), (ref_value, ref_grads) = actual, expected
  np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
  for grad, ref_grad in zip(grads, ref_grads, strict=True):
    np.testing.assert_allclose(grad, ref_grad, rtol=RTOL, atol=ATOL)


def _mesh(axis_type):
  assert jax.device_count() >= NUM_DEVICES
  return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(axis_type,))


KERNELS = ["info_nce", "nt_xent", "pro_ucl"]
AXIS_TYPES = [
  pytest.param(AxisType.Explicit, id="explicit"),
  pytest.param(AxisType.Auto, id="auto"),
]


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
@pytest.mark.parametrize("name", KERNELS)
def test_sharded_jit_equals_single_device(name, axis_type):
  loss, args, specs = _problem(name)
  expected = jax.jit(_value_and_grads, static_argnums=0)(loss, args)
  mesh = _mesh(axis_type)
  sharded = tuple(
    jax.device_put(x, NamedSharding(mesh, spec))
    for x, spec in zip(args, specs, strict=True)
  )
  assert len(sharded[0].sharding.device_set) == NUM_DEVICES
  with jax.set_mesh(mesh):
    actual = jax.jit(_value_and_grads, static_argnums=0)(loss, sharded)
    # gradients keep the batch sharding of their inputs
    assert actual[1][0].sharding.is_equivalent_to(
      NamedSharding(mesh, specs[0]), args[0].ndim
    )
  _assert_same(actual, expected)


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
@pytest.mark.parametrize("name", KERNELS)
def test_shard_map_axis_name_equals_single_device(name, axis_type):
  loss, args, specs = _problem(name)
  expected = jax.jit(_value_and_grads, static_argnums=0)(loss, args)
  mesh = _mesh(axis_type)
  mapped = jax.shard_map(
    functools.partial(loss, axis_name="data"),
    mesh=mesh,
    in_specs=specs,
    out_specs=P(),
  )
  sharded = tuple(
    jax.device_put(x, NamedSharding(mesh, spec))
    for x, spec in zip(args, specs, strict=True)
  )
  with jax.set_mesh(mesh):
    actual = jax.jit(_value_and_grads, static_argnums=0)(mapped, sharded)
  _assert_same(actual, expected)


def test_shard_map_without_axis_name_is_a_per_device_loss():
  """Guards the test above: without axis_name each device sees 2 items."""
  loss, args, specs = _problem("info_nce")
  mesh = _mesh(AxisType.Explicit)
  mapped = jax.shard_map(
    lambda a, b: loss(a, b)[None],
    mesh=mesh,
    in_specs=specs,
    out_specs=P("data"),
  )
  sharded = [jax.device_put(x, NamedSharding(mesh, P("data"))) for x in args]
  with jax.set_mesh(mesh):
    per_device = jax.jit(mapped)(*sharded)
  expected = loss(*args)
  assert per_device.shape == (NUM_DEVICES,)
  assert not np.allclose(np.mean(per_device), expected, rtol=1e-3)


def _other_kernels(name):
  """E2's other kernels as functions of (z [M, B, D], prototypes, labels)."""
  if name == "samobal_select":
    return lambda z, p, y: samobal_select(z, p, y, key=jax.random.key(0)).z_fus
  if name == "samobal_infer":
    return lambda z, p, y: samobal_infer(z, p).logits
  if name == "pro_fd":
    return lambda z, p, y: pro_fd(z[0], y, p, num_iters=5)[0]
  return lambda z, p, y: fc_rs(z[0], y, num_classes=5)


@pytest.mark.parametrize(
  "name", ["samobal_select", "samobal_infer", "pro_fd", "fc_rs"]
)
def test_other_kernels_under_explicit_sharded_jit(name):
  """Label gathers and pairwise metrics stay legal on Explicit meshes."""
  rng = np.random.default_rng(1)
  z = rng.normal(size=(2, BATCH, 8)).astype(np.float32)
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  protos = np.eye(5, 8, dtype=np.float32)
  labels = rng.integers(0, 5, BATCH).astype(np.int32)
  fun = jax.jit(_other_kernels(name))
  expected = fun(z, protos, labels)
  mesh = _mesh(AxisType.Explicit)
  args = [
    jax.device_put(x, NamedSharding(mesh, spec))
    for x, spec in ((z, P(None, "data")), (protos, P()), (labels, P("data")))
  ]
  with jax.set_mesh(mesh):
    actual = fun(*args)
  for got, want in zip(
    jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True
  ):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
