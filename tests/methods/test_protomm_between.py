"""ProtoMM's between-modality term alone (alpha = 0) learns, over 3 seeds.

With SPEC §2's SwAV temperatures (tau 0.1, epsilon 0.05) the swapped
prediction between modalities collapses to the uniform solution (loss
exactly ln K for every step after the first few); msjax's ProtoMM defaults
(tau 0.2, epsilon 0.02, docs/claims.md) must leave ln K within the first 10%
of training and give an encoder that beats its own random initialisation.
"""

import math

import numpy as np
import pytest

from msjax.methods import protomm
from tests.methods import _seeds_util as su

STEPS = 300
BATCH = 64


@pytest.fixture(scope="module")
def config():
  c = su.learning_config(protomm.METHOD)
  c.loss.alpha = 0.0
  return c


@pytest.fixture(scope="module")
def runs(config):
  """Half the budget (150 steps) on every seed, trained once for both tests.

  The first 30 steps are those a 30-step run would take: the same init,
  step keys and batch stream, and no schedule.
  """
  return su.train_seeds(
    protomm.METHOD,
    config,
    steps=STEPS // 2,
    probed="fused",
    batch_size=BATCH,
    # Looped and optimised (session 23; 32 -> 15 s alone). Margins seeds
    # 0-2 / 3-5: 0.082, 0.156, 0.145 / 0.250, 0.094, 0.199. Seed 3 leaves
    # ln 8 = 2.079 late: its mean loss over steps 20-29 is 2.061 here and
    # 2.061 vmapped unoptimised (as before session 23), above the test's
    # 2.029; seeds 0-2 pass (docs/claims.md, "The learning tests on other
    # seeds").
    compiler_options=su.OPTIMIZED,
  )


def test_between_modality_loss_leaves_ln_k_early(config, runs):
  ln_k = math.log(config.model.num_prototypes)
  for run in runs:
    # mean loss over steps 20..29 (the end of the first 10% of STEPS).
    early = float(np.mean(run.losses[STEPS // 10 - 10 : STEPS // 10]))
    assert early < ln_k - 0.05, (run.seed, early, ln_k)


def test_between_modality_encoder_beats_random_on_every_seed(runs):
  margins = [run.margin for run in runs]
  assert min(margins) > 0.04, margins
