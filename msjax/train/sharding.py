"""Device mesh, batch and parameter shardings.

One code path for 1 device, many devices and many hosts: a ``jax.make_mesh``
mesh with a ``data`` and an ``fsdp`` axis; the batch is split over both axes,
parameters are replicated or (``fsdp`` > 1) split along their largest
dimension that divides.
"""

import math
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from msjax.train.errors import ConfigError

__all__ = [
  "BATCH_AXES",
  "batch_sharding",
  "make_mesh",
  "param_sharding",
  "replicated",
  "state_shardings",
]

BATCH_AXES = ("data", "fsdp")


def make_mesh(
  mesh_config: ml_collections.ConfigDict,
  devices: list[jax.Device] | None = None,
) -> Mesh:
  """Builds the ``(data, fsdp)`` mesh the config asks for.

  Args:
    mesh_config: ``config.train.mesh`` (``data`` = -1 takes every device
      left; otherwise the first ``data * fsdp`` devices are used).
    devices: the devices to use (default: all of them).

  Returns:
    A mesh with explicit ``Auto`` axis types.
  """
  devices = list(jax.devices() if devices is None else devices)
  fsdp = mesh_config.fsdp
  data = mesh_config.data
  if data == -1:
    if fsdp < 1 or len(devices) % fsdp:
      raise ConfigError(
        f"train.mesh.fsdp={fsdp} does not divide {len(devices)} devices"
      )
    data = len(devices) // fsdp
  if data < 1 or fsdp < 1 or data * fsdp > len(devices):
    raise ConfigError(
      f"train.mesh data={data} x fsdp={fsdp} needs more than the"
      f" {len(devices)} devices available"
    )
  devices = devices[: data * fsdp]
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh(
    (data, fsdp), BATCH_AXES, axis_types=(auto, auto), devices=devices
  )


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every mesh axis."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  """Fully replicated arrays."""
  return NamedSharding(mesh, PartitionSpec())


def param_sharding(
  shape: tuple[int, ...], mesh: Mesh, *, min_size: int
) -> NamedSharding:
  """FSDP sharding of one parameter.

  The largest dimension divisible by the ``fsdp`` axis size is split; arrays
  smaller than ``min_size`` elements (or with no such dimension) stay
  replicated.

  Args:
    shape: the parameter's shape.
    mesh: the mesh.
    min_size: the size floor.

  Returns:
    The parameter's sharding.
  """
  fsdp = mesh.shape["fsdp"]
  if fsdp == 1 or math.prod(shape) < min_size:
    return replicated(mesh)
  for axis in np.argsort(shape)[::-1]:
    if shape[axis] % fsdp == 0:
      spec = [None] * len(shape)
      spec[axis] = "fsdp"
      return NamedSharding(mesh, PartitionSpec(*spec))
  return replicated(mesh)


def state_shardings(abstract_state: Any, mesh: Mesh, *, min_size: int) -> Any:
  """Shardings for a pytree of ``ShapeDtypeStruct`` (scalars replicated)."""
  return jax.tree.map(
    lambda leaf: param_sharding(tuple(leaf.shape), mesh, min_size=min_size),
    abstract_state,
  )
