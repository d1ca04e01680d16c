"""ProtoMM's between-modality term alone (alpha = 0) learns, over 3 seeds.

With SPEC §2's SwAV temperatures (tau 0.1, epsilon 0.05) the swapped
prediction between modalities collapses to the uniform solution (loss
exactly ln K for every step after the first few); msjax's ProtoMM defaults
(tau 0.2, epsilon 0.02, docs/claims.md) must leave ln K within the first 10%
of ``experiments/protomm.py``'s 1000 steps (the issue's run) and give an
encoder that beats its own random initialisation.
"""

import math

import numpy as np
import pytest

from msjax.methods import protomm
from tests.methods import _seeds_util as su

STEPS = 300
BATCH = 64
#: ``train.total_steps`` of ``experiments/protomm.py`` (Adam(W) at 1e-2,
#: batch 64, as here): "leaves ln K within its first 10 % of steps" is
#: checked over that run's steps 90-99.
EXPERIMENT_STEPS = 1000


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
    # 0-2 / 3-5: 0.082, 0.156, 0.145 / 0.250, 0.094, 0.199. Mean loss over
    # steps 90-99, seeds 0-7 (session 24): 1.44-1.63 against ln 8 - 0.05 =
    # 2.029. Over steps 20-29 (10 % of this module's 300) seeds 3, 4, 5
    # were still at 2.078, 2.068, 2.056: the loss starts above ln K (2.23-
    # 2.38) and falls through it without stopping. SPEC's temperatures
    # (0.1, 0.05) give 2.081 / 1.938 / 2.081 on seeds 0-2 (two stay at ln 8
    # for good): this test fails on them. ``experiments/protomm.py`` itself
    # (alpha 0, seeds 0-5): 1.875, 1.982, 1.949, 1.968, 1.844, 1.914 over
    # its steps 91-100 (docs/claims.md, "ProtoMM: the between-modality
    # term alone").
    compiler_options=su.OPTIMIZED,
  )


def test_between_modality_loss_leaves_ln_k_early(config, runs):
  ln_k = math.log(config.model.num_prototypes)
  end = EXPERIMENT_STEPS // 10
  for run in runs:
    # mean loss over the last 10 of the experiment's first 10 % of steps.
    early = float(np.mean(run.losses[end - 10 : end]))
    assert early < ln_k - 0.05, (run.seed, early, ln_k)


def test_between_modality_encoder_beats_random_on_every_seed(runs):
  margins = [run.margin for run in runs]
  assert min(margins) > 0.04, margins
