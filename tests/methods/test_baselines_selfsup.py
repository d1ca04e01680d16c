"""Self-supervised baselines (CLIP, SimCLR, joint): learning on three seeds."""

import jax
import jax.numpy as jnp
import pytest

from msjax.methods import METHODS
from tests.methods import _seeds_util as su
from tests.methods import _train_util as tu

# name -> (probed embedding, steps, learning rate). The pulse encoder is
# probed: a random encoder reads exertion well from motion energy but poorly
# from the pulse. The trained probe must beat the random one by MARGIN on
# every seed. CLIP's margins at 300 steps: seeds 0-2 0.137, 0.102, 0.258,
# seeds 3-5 0.164, 0.059, 0.102 (at 150 steps seeds 3-5 gave 0.121, 0.0,
# -0.059: docs/claims.md, "The learning tests on other seeds"). SimCLR and
# joint still fail on seeds 3-5 (SimCLR at 300 steps: 0.098, 0.035, 0.207).
CASES = {
  "clip": ("ppg", 300, 1e-2),
  "simclr": ("ppg", 150, 1e-2),
  "joint": ("ppg", 300, 3e-3),
}
MARGIN = 0.03


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_lowers_loss_and_beats_random_probe_on_three_seeds(name):
  method = METHODS[name]
  probed, steps, learning_rate = CASES[name]
  config = su.learning_config(method)
  runs = su.train_seeds(
    method, config, steps=steps, probed=probed, learning_rate=learning_rate
  )
  margins = [round(run.margin, 3) for run in runs]
  assert min(margins) > MARGIN, margins
  # The loss on one fixed batch and key falls on every seed; the key drives
  # the augmentations (same key, same loss; another key, another loss).
  batch = tu.fixed_batch(tu.sources(config)[0], 32, seed=3)
  loss_at = tu.jitted(method, config, "loss_fn")
  key, step = jax.random.key(7), jnp.int32(0)
  drops = []
  for run in runs:
    before = float(loss_at(run.initial, batch, key, step)[0])
    after = float(loss_at(run.variables, batch, key, step)[0])
    drops.append(round(before - after, 3))
  assert min(drops) > 0.5, drops
  trained = runs[0].variables
  after = float(loss_at(trained, batch, key, step)[0])
  assert float(loss_at(trained, batch, key, step)[0]) == after
  assert float(loss_at(trained, batch, jax.random.key(8), step)[0]) != after


# Measured (seeds 0/1/2, trained - random probe on the pulse encoder): CLIP
# 0.062, 0.062, 0.176; SimCLR 0.066, 0.074, 0.195; joint 0.121, 0.051, 0.164
# (joint at 150 steps and 1e-2: 0.074, 0.031, 0.199). Fixed-batch loss drop:
# CLIP 1.70-2.10, SimCLR 3.14-3.27, joint 4.21-5.40 (bar 0.5).
