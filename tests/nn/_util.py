"""Jitted init/apply helpers for the model tests.

One compile per (module, static arguments) instead of op-by-op eager
dispatch; the module is a static (hashable) argument so repeated calls with
new arrays reuse the compiled function.
"""

import functools

import jax


@functools.partial(jax.jit, static_argnames=("module", "train"))
def init(module, rngs, *args, train):
  return module.init(rngs, *args, train=train)


@functools.partial(jax.jit, static_argnames=("module", "train", "mutable"))
def apply(module, variables, *args, rngs=None, train, mutable=False):
  return module.apply(variables, *args, rngs=rngs, train=train, mutable=mutable)


def num_params(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))
