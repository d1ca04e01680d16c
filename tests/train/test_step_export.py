"""The exported train step (msjax.train.step_export) on the toy method.

What must hold: the stored step computes what the jitted step computes
(bitwise: the same lowered program), a later setup of the same config
loads it without tracing the method, its key follows everything the trace
depends on but the seed, and a damaged entry is traced again.
"""

import dataclasses
import importlib.util
import os
import sys

import jax
import numpy as np
import pytest

from msjax.train import config_lib, sharding, step_export
from msjax.train.feed import BatchFeed
from msjax.train.step import TrainSetup
from tests.train import toy

STEPS = 3


def _counting_method():
  """The toy method with a loss that counts its traces."""
  traces = []

  def loss_fn(*args):
    traces.append(1)
    return toy.loss_fn(*args)

  return dataclasses.replace(toy.METHOD, loss_fn=loss_fn), traces


def _run(method, config, export_dir):
  """STEPS steps from the seed's init; returns (states, metrics, setup)."""
  mesh = sharding.make_mesh(config.train.mesh)
  feed = BatchFeed(toy.make_source(config.data, "train"), config, mesh)
  setup = TrainSetup(
    method, config, mesh, feed.host_batch(0), export_dir=export_dir
  )
  state = setup.init_fn(setup.seed)
  metrics = []
  for i in range(STEPS):
    state, m = setup.step_fn(state, feed(i), setup.seed)
    metrics.append(m)
  return jax.device_get((state, metrics)), setup


def _assert_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(x, y)


def _config(**overrides):
  config = toy.get_config()
  config_lib.apply_overrides(
    config, [f"{key}={value}" for key, value in overrides.items()]
  )
  return config


def test_stored_step_equals_the_jitted_step_and_loads_without_tracing(
  tmp_path,
):
  method, traces = _counting_method()
  config = _config(**{"train.mesh.data": 2})  # sharded batch, 2 devices
  expected, _ = _run(method, config, None)
  assert traces  # the jitted step traced the loss
  traces.clear()
  first, setup = _run(method, config, str(tmp_path))
  assert not setup.step_fn.loaded and traces
  assert [p.name for p in tmp_path.iterdir()] == [setup.step_fn.path.name]
  traces.clear()
  second, setup = _run(method, config, str(tmp_path))
  assert setup.step_fn.loaded and not traces  # nothing of the method traced
  _assert_equal(first, expected)
  _assert_equal(second, expected)
  # The state keeps its shardings through the stored step.
  state = setup.init_fn(setup.seed)
  mesh = sharding.make_mesh(config.train.mesh)
  feed = BatchFeed(toy.make_source(config.data, "train"), config, mesh)
  state, _ = setup.step_fn(state, feed(0), setup.seed)
  for leaf, shard in zip(
    jax.tree.leaves(state), jax.tree.leaves(setup.state_sharding), strict=True
  ):
    assert leaf.sharding == shard


def test_seeds_share_an_entry_and_the_config_keys_it(tmp_path):
  method, _ = _counting_method()
  _run(method, _config(seed=0), str(tmp_path))
  expected, _ = _run(method, _config(seed=5), None)
  got, setup = _run(method, _config(seed=5), str(tmp_path))
  assert setup.step_fn.loaded  # seed 0's entry, called with seed 5
  _assert_equal(got, expected)
  _, setup = _run(method, _config(**{"optim.learning_rate": 0.5}), tmp_path)
  assert not setup.step_fn.loaded
  assert len(list(tmp_path.glob("*.jaxexport"))) == 2


def test_a_damaged_entry_is_traced_again_and_replaced(tmp_path):
  method, _ = _counting_method()
  config = _config()
  expected, setup = _run(method, config, str(tmp_path))
  path = setup.step_fn.path
  path.write_bytes(path.read_bytes()[:100])  # a torn write
  with pytest.warns(UserWarning, match="unreadable.*tracing it again"):
    got, setup = _run(method, config, str(tmp_path))
  assert not setup.step_fn.loaded
  _assert_equal(got, expected)
  _, setup = _run(method, config, str(tmp_path))
  assert setup.step_fn.loaded  # the replacement is whole
  assert not list(tmp_path.glob("*.tmp"))


def test_the_key_follows_a_method_defined_outside_msjax(tmp_path):
  """A fork's loss edited between runs must not find the old entry."""
  module_path = tmp_path / "fork_loss.py"
  source = (
    "from tests.train import toy\n\n\n"
    "def loss_fn(*args):\n  return toy.loss_fn(*args)\n"
  )
  module_path.write_text(source)
  spec = importlib.util.spec_from_file_location("fork_loss", module_path)
  module = importlib.util.module_from_spec(spec)
  sys.modules["fork_loss"] = module
  try:
    spec.loader.exec_module(module)
    method = dataclasses.replace(toy.METHOD, loss_fn=module.loss_fn)
    config = _config()
    args = (np.zeros(3), {"x": np.ones((2, 4), np.float32)}, np.int32(0))
    before = step_export.fingerprint(method, config, args)
    assert step_export.fingerprint(method, config, args) == before
    module_path.write_text(source + "# edited\n")
    assert step_export.fingerprint(method, config, args) != before
    # Shapes of the arguments are part of the key; the seed's value is not.
    wider = (args[0], {"x": np.ones((2, 5), np.float32)}, args[2])
    assert step_export.fingerprint(method, config, wider) != before
    other_seed = config.copy_and_resolve_references()
    other_seed.seed = 7
    module_path.write_text(source)
    assert step_export.fingerprint(method, other_seed, args) == before
  finally:
    del sys.modules["fork_loss"]


def test_a_step_export_refuses_still_trains_as_the_jitted_step(tmp_path):
  """A host callback (not serialisable) in a fork's loss: warned, jitted."""
  seen = []

  def loss_fn(variables, batch, rng, config, step):
    jax.debug.callback(lambda s: seen.append(int(s)), step)
    return toy.loss_fn(variables, batch, rng, config, step)

  method = dataclasses.replace(toy.METHOD, loss_fn=loss_fn)
  config = _config()
  expected, _ = _run(method, config, None)
  seen.clear()
  with pytest.warns(UserWarning, match="train step not stored"):
    got, setup = _run(method, config, str(tmp_path))
  assert setup.step_fn.fallback is not None and not setup.step_fn.loaded
  assert not list(tmp_path.glob("*.jaxexport"))
  _assert_equal(got, expected)
  jax.effects_barrier()
  assert seen == list(range(STEPS))  # the callback ran in every step


def test_evict_keeps_the_most_recently_used_entries(tmp_path):
  paths = [tmp_path / f"{i}.jaxexport" for i in range(5)]
  for i, path in enumerate(paths):
    path.write_bytes(b"x")
    os.utime(path, ns=(i * 10**9, i * 10**9))
  os.utime(paths[0], ns=(10**10, 10**10))  # entry 0 loaded last
  (tmp_path / "other.txt").write_text("not an entry")
  gone = step_export.evict(tmp_path, keep=2)
  assert sorted(p.name for p in gone) == ["1.jaxexport", "2.jaxexport",
                                          "3.jaxexport"]  # fmt: skip
  assert sorted(p.name for p in tmp_path.iterdir()) == [
    "0.jaxexport",
    "4.jaxexport",
    "other.txt",
  ]
  assert step_export.evict(tmp_path, keep=2) == []
