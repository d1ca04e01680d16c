"""Helpers that keep E2's kernels legal under Explicit-axis sharded ``jit``.

Under ``jit`` on a mesh whose axes are ``AxisType.Explicit`` (the default of
recent ``jax.make_mesh``), some global-batch operations have no unambiguous
output sharding: a batch x batch similarity of two batch-sharded operands, or
a gather of table rows by batch-sharded indices. These helpers express such
steps so they work identically without a mesh, under Auto and under Explicit
axes (and :func:`contraction_sharding` names the output sharding that a
contraction over an Explicit axis needs). Pure ``jnp``; private to
:mod:`msjax.kernels`.
"""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec

__all__ = [
  "contraction_sharding",
  "replicate_explicit",
  "sharded_explicitly",
  "take_rows",
]


def _explicit_dims(x: jax.Array) -> tuple[set[str], ...]:
  """Per dimension of ``x``: the Explicit mesh axes that split it.

  All empty without a mesh, under Auto axes and inside ``shard_map``.
  """
  sharding = getattr(jax.typeof(x), "sharding", None)
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or not getattr(mesh, "axis_names", ()):
    return tuple(set() for _ in range(x.ndim))
  explicit = {
    name
    for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
    if kind == AxisType.Explicit
  }
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
  dims = []
  for entry in spec:
    names = (
      set()
      if entry is None
      else set(entry if isinstance(entry, tuple) else (entry,))
    )
    dims.append(names & explicit)
  return tuple(dims)


def replicate_explicit(x: jax.Array) -> jax.Array:
  """Reshards ``x`` to replicated if it is sharded over Explicit mesh axes.

  The all-gather this implies is exactly what Auto mode inserts by itself.
  Arrays without Explicit shardings (no mesh, Auto axes, inside
  ``shard_map``) are returned unchanged.

  Args:
    x: any array.

  Returns:
    ``x``, replicated over Explicit mesh axes.
  """
  if any(_explicit_dims(x)):
    return jax.reshard(x, PartitionSpec())
  return x


def sharded_explicitly(x: jax.Array, axis: int) -> bool:
  """Whether dimension ``axis`` of ``x`` is split over Explicit mesh axes.

  Such a dimension cannot be reshaped into chunks without naming output
  shardings; ``False`` without a mesh, under Auto axes and inside
  ``shard_map``.
  """
  return bool(_explicit_dims(x)[axis])


def take_rows(table: jax.Array, index: jax.Array) -> jax.Array:
  """``table[index]`` as an exact one-hot matmul: ``[K, D], [B] -> [B, D]``.

  A matmul takes its output sharding from the (batch-sharded) index under
  every sharding mode, where a gather would need an explicit output
  sharding. ``HIGHEST`` precision keeps the selected rows exact on
  accelerators too. Indices outside ``0..K-1`` give zero rows.

  Args:
    table: ``[K, D]`` rows to pick from.
    index: ``[B]`` integer row indices.

  Returns:
    ``[B, D]`` picked rows, same dtype as ``table``.
  """
  onehot = jax.nn.one_hot(index, table.shape[0], dtype=table.dtype)
  return jnp.matmul(onehot, table, precision=jax.lax.Precision.HIGHEST)


def contraction_sharding(x: jax.Array, keep: tuple[int | None, ...]) -> dict:
  """``out_sharding`` for a contraction of ``x`` under Explicit sharding.

  With an Explicit mesh axis on a contracted dimension, JAX asks for the
  output sharding of ``einsum``/``dot_general``; the result of a
  batch contraction is the partial sums reduced over devices, so it keeps
  only the kept dimensions' specs. Returns ``{}`` outside Explicit meshes.

  Args:
    x: the operand whose dimensions are contracted or kept.
    keep: for every output dimension, the ``x`` dimension whose sharding
      it keeps, or ``None`` for an unsharded output dimension.

  Returns:
    ``{"out_sharding": NamedSharding}`` or ``{}``.
  """
  dims = _explicit_dims(x)
  contracted = set(range(x.ndim)) - set(keep)
  if not any(dims[axis] for axis in contracted):
    return {}
  sharding = jax.typeof(x).sharding
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
  return {
    "out_sharding": NamedSharding(
      sharding.mesh,
      PartitionSpec(*(None if axis is None else spec[axis] for axis in keep)),
    )
  }
