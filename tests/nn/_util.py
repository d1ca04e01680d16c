"""Jitted init/apply helpers for the model tests (one compile per call site
instead of op-by-op eager dispatch)."""

import functools

import jax


def init(module, rngs, *args, **kwargs):
  return jax.jit(functools.partial(module.init, **kwargs))(rngs, *args)


def apply(module, variables, *args, rngs=None, mutable=False, **kwargs):
  fn = functools.partial(module.apply, rngs=rngs, mutable=mutable, **kwargs)
  return jax.jit(fn)(variables, *args)


def num_params(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))
