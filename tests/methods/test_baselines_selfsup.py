"""Self-supervised baselines (CLIP, SimCLR, joint): learning on three seeds."""

import jax
import jax.numpy as jnp
import pytest

from msjax.methods import METHODS
from tests.methods import _seeds_util as su
from tests.methods import _train_util as tu

# name -> (probed embedding, steps, learning rate). CLIP's pulse encoder is
# probed: a random encoder reads exertion well from motion energy but poorly
# from the pulse. SimCLR and joint are probed on the fused embedding (joint
# trains one representation of both modalities; SimCLR's pulse encoder alone
# beat its random encoder by only 0.031 on seed 4 at 300 steps). The trained
# probe must beat the random one by MARGIN on every seed. The steps compile
# with XLA's optimisation (su.OPTIMIZED). Margins, seeds 0-2 / 3-5 (each
# three trained together; docs/claims.md, "The learning tests on other
# seeds"): CLIP 0.109, 0.090, 0.230 / 0.191, 0.094, 0.145; SimCLR 0.133,
# 0.105, 0.184 / 0.195, 0.102, 0.215; joint 0.066, 0.105, 0.152 / 0.109,
# 0.082, 0.184. With the suite's unoptimised flags (other rounding): CLIP
# 0.137, 0.102, 0.258 / 0.164, 0.059, 0.102; SimCLR 0.121, 0.105, 0.160 /
# 0.219, 0.113, 0.227; joint 0.113, 0.098, 0.172 / 0.129, 0.094, 0.207.
# Before (CLIP and SimCLR at 150 steps, SimCLR's and joint's pulse encoder
# probed, joint at 3e-3) seeds 3-5 gave CLIP 0.121, 0.0, -0.059, SimCLR
# 0.121, 0.008, 0.188 and joint 0.023, -0.047, 0.141. The seeds trained
# one after another (session 23, tests/methods/_multiseed.py), optimised:
# CLIP 0.109, 0.109, 0.258 / 0.164, 0.043, 0.207; SimCLR 0.117, 0.090,
# 0.172 / 0.191, 0.078, 0.223; joint 0.078, 0.098, 0.137 / 0.148, 0.105,
# 0.195.
CASES = {
  "clip": ("ppg", 300, 1e-2),
  "simclr": ("fused", 300, 1e-2),
  "joint": ("fused", 300, 1e-2),
}
MARGIN = 0.03


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_lowers_loss_and_beats_random_probe_on_three_seeds(name):
  method = METHODS[name]
  probed, steps, learning_rate = CASES[name]
  config = su.learning_config(method)
  runs = su.train_seeds(
    method,
    config,
    steps=steps,
    probed=probed,
    learning_rate=learning_rate,
    compiler_options=su.OPTIMIZED,
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
