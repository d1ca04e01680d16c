"""msjax.train.step: the seed as a program argument, and the step's global
norms (``grad_norm``, ``param_norm``, ``update_norm``) against float64
numpy."""

import jax
import numpy as np
import pytest

from msjax.train import sharding
from msjax.train.errors import ConfigError
from msjax.train.feed import BatchFeed
from msjax.train.loop import check_config
from msjax.train.step import TrainSetup, init_variables, seed_array, tree_norms
from tests.train import toy


def _setup(seed):
  config = toy.get_config()
  with config.unlocked():
    config.seed = seed
  mesh = sharding.make_mesh(config.train.mesh, jax.devices()[:1])
  source = toy.make_source(config.data, "train")
  feed = BatchFeed(source, config, mesh)
  host = feed.host_batch(0)
  return config, TrainSetup(toy.METHOD, config, mesh, host), feed, host


def test_runs_that_differ_only_in_seed_share_one_program():
  (_, a, feed, host), (config_b, b, _, _) = _setup(3), _setup(11)
  state_a, state_b = a.init_fn(a.seed), b.init_fn(b.seed)
  batch = feed.global_batch(host)
  lowered = [
    s.step_fn.lower(state, batch, s.seed).as_text()
    for s, state in ((a, state_a), (b, state_b))
  ]
  assert lowered[0] == lowered[1]
  assert a.init_fn.lower(a.seed).as_text() == b.init_fn.lower(b.seed).as_text()
  # ... while the seed still decides the run: the init equals the method's
  # init from fold_in(key(11), 2**31 - 1) with 11 a constant of the program
  # (as before the seed became an argument), not seed 3's.
  expected = jax.jit(lambda: init_variables(toy.METHOD, config_b, host))()
  for got, want in zip(
    jax.tree.leaves(state_b["params"]),
    jax.tree.leaves(expected["params"]),
    strict=True,
  ):
    np.testing.assert_array_equal(got, want)
  assert not np.allclose(
    state_a["params"]["prototypes"], state_b["params"]["prototypes"]
  )
  (_, metrics_a), (_, metrics_b) = (
    s.step_fn(state, batch, s.seed) for s, state in ((a, state_a), (b, state_b))
  )
  assert float(metrics_a["loss"]) != float(metrics_b["loss"])


@pytest.mark.parametrize("seed", [-1, 2**31])
def test_seeds_outside_int32_are_refused(seed):
  config = toy.get_config()
  with config.unlocked():
    config.seed = seed
  with pytest.raises(ConfigError, match=r"seed=.*: seed must be in"):
    check_config(config)
  with pytest.raises(ValueError, match="seed must be in"):
    seed_array(seed)


@pytest.mark.parametrize("seed", [1.5, True, "3"])
def test_seed_array_takes_only_ints(seed):
  with pytest.raises(ValueError, match="seed must be an int"):
    seed_array(seed)


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
