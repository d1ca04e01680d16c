"""Self-supervised baselines (CLIP, SimCLR, joint): short training runs."""

import jax
import jax.numpy as jnp
import pytest

from msjax.methods import METHODS
from tests.methods import _train_util as tu

STEPS = 300
LEARNING_RATE = 3e-3
# name -> (probed embedding, margin over the random encoder's probe). The
# pulse encoder is probed for CLIP/SimCLR: a random encoder reads exertion
# well from motion energy but poorly from the pulse (test accuracy 0.65).
PROBES = {
  "clip": ("ppg", 0.03),
  "simclr": ("ppg", 0.03),
  "joint": ("ppg", 0.03),
}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_training_lowers_loss_and_beats_random_probe(name):
  method = METHODS[name]
  config = tu.experiment_config(method)
  train_src, test_src = tu.sources(config)
  v0 = tu.init(method, config, tu.fixed_batch(train_src, 32))
  result = tu.train(
    method,
    config,
    train_src,
    steps=STEPS,
    learning_rate=LEARNING_RATE,
    variables=v0,
  )
  batch = tu.fixed_batch(train_src, 32, seed=3)
  loss_at = tu.jitted(method, config, "loss_fn")
  key, step = jax.random.key(7), jnp.int32(0)
  before, _ = loss_at(v0, batch, key, step)
  after, _ = loss_at(result.variables, batch, key, step)
  again, _ = loss_at(result.variables, batch, key, step)
  other, _ = loss_at(result.variables, batch, jax.random.key(8), step)
  assert float(after) == float(again)  # same key => same loss
  assert float(after) != float(other)  # the key drives the augmentations
  assert float(after) < float(before) - 0.5
  probed, margin = PROBES[name]
  random_acc, trained_acc = tu.probe_accuracies(
    method, [v0, result.variables], config, train_src, test_src, key=probed
  )
  assert trained_acc > random_acc + margin
