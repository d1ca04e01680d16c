"""The train step's global norms (``grad_norm``, ``param_norm``,
``update_norm``) against float64 numpy."""

import jax
import numpy as np

from msjax.train.step import tree_norms


def _tree(rng, scale):
  return {
    "a": {
      "w": scale * rng.normal(size=(3, 4)),
      "b": scale * rng.normal(size=4),
    },
    "c": np.float32(scale * rng.normal()),
    "d": scale * rng.normal(size=(2, 2, 5)),
  }


def test_tree_norms_equal_each_trees_float64_norm():
  rng = np.random.default_rng(0)
  trees = [_tree(rng, s) for s in (1.0, 1e-3, 30.0)]
  trees32 = jax.tree.map(lambda x: np.asarray(x, np.float32), trees)
  got = np.asarray(jax.jit(tree_norms)(*trees32))
  want = [
    np.sqrt(sum(np.sum(np.float64(x) ** 2) for x in jax.tree.leaves(t)))
    for t in trees32
  ]
  assert got.shape == (3,)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # one tree alone is the same norm
  np.testing.assert_allclose(tree_norms(trees32[1]), want[1:2], rtol=1e-6)
