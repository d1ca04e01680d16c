"""Helpers that keep E2's kernels legal under Explicit-axis sharded ``jit``.

Under ``jit`` on a mesh whose axes are ``AxisType.Explicit`` (the default of
recent ``jax.make_mesh``), some global-batch operations have no unambiguous
output sharding: a batch x batch similarity of two batch-sharded operands, or
a gather of table rows by batch-sharded indices. These helpers express such
steps so they work identically without a mesh, under Auto and under Explicit
axes. Pure ``jnp``; private to :mod:`msjax.kernels`.
"""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, PartitionSpec

__all__ = ["replicate_explicit", "take_rows"]


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
  sharding = jax.typeof(x).sharding
  mesh = sharding.mesh
  if mesh.empty:
    return x
  explicit = {
    name
    for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
    if kind == AxisType.Explicit
  }
  used = set()
  for entry in sharding.spec:
    if entry is None:
      continue
    used.update(entry if isinstance(entry, tuple) else (entry,))
  if used & explicit:
    return jax.reshard(x, PartitionSpec())
  return x


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
