"""MoCo v3: loss vs numpy, gradients, the momentum state, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from msjax.methods import moco
from tests.methods import _numpy_refs as ref
from tests.methods import _seeds_util as su
from tests.methods import _train_util as tu

TAU = 0.2


def _qk():
  rng = np.random.default_rng(0)
  return rng.normal(size=(6, 5)), rng.normal(size=(6, 5))


def test_contrastive_matches_numpy(x64):
  q, k = _qk()
  got = moco.moco_contrastive(jnp.asarray(q), jnp.asarray(k), tau=TAU)
  np.testing.assert_allclose(got, ref.moco_ctr(q, k, TAU), rtol=1e-10)


def test_gradient_matches_finite_differences_and_stops_at_keys(x64):
  q, k = jnp.asarray(_qk()[0]), jnp.asarray(_qk()[1])
  check_grads(
    lambda a: moco.moco_contrastive(a, k, tau=TAU),
    (q,),
    order=1,
    modes=("rev",),
    atol=1e-6,
    rtol=1e-6,
  )
  grad_k = jax.grad(lambda b: moco.moco_contrastive(q, b, tau=TAU))(k)
  np.testing.assert_array_equal(grad_k, 0.0)


@pytest.fixture(scope="module")
def setup():
  config = tu.experiment_config(moco.METHOD)
  batch = tu.fixed_batch(tu.sources(config)[0], 16)
  variables = tu.init(moco.METHOD, config, batch)
  return config, batch, variables


def test_momentum_state_starts_as_query_and_is_averaged(setup):
  config, batch, variables = setup
  params, key_params = variables["params"], variables["momentum"]["params"]
  assert set(key_params) == {k for k in params if "predictor" not in k}
  for a, b in zip(
    jax.tree.leaves(key_params),
    jax.tree.leaves({k: params[k] for k in key_params}),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  shifted = jax.tree.map(lambda x: x + 1.0, key_params)
  variables = {**variables, "momentum": {"params": shifted}}
  loss_at = tu.jitted(moco.METHOD, config, "loss_fn")
  loss, (state, metrics) = loss_at(
    variables, batch, jax.random.key(1), jnp.int32(0)
  )
  assert set(state) == {"batch_stats", "momentum"}
  mu = config.loss.momentum
  expected = jax.tree.map(
    lambda xi, theta: mu * xi + (1 - mu) * theta,
    shifted,
    {k: params[k] for k in key_params},
  )
  for a, b in zip(
    jax.tree.leaves(state["momentum"]["params"]),
    jax.tree.leaves(expected),
    strict=True,
  ):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # The key branch runs on the momentum parameters.
  other, _ = loss_at(setup[2], batch, jax.random.key(1), jnp.int32(0))
  assert float(loss) != float(other)
  assert set(metrics) == {"loss/moco", "loss/moco/ppg", "loss/moco/acc"}


def test_interface(setup):
  config, batch, variables = setup
  assert moco.METHOD.requires_paired_rows(config) is False
  emb = tu.jitted(moco.METHOD, config, "embed")(variables, batch)
  f = config.model.feature_dim
  assert {k: v.shape for k, v in emb.items()} == {
    "fused": (16, 2 * f),
    "ppg": (16, f),
    "acc": (16, f),
  }
  labels = moco.METHOD.param_labels(variables["params"], config)
  assert set(jax.tree.leaves(labels)) == {"main"}


def test_training_beats_random_probe_over_three_seeds():
  # A 300-step run scales the key encoder's averaging to its budget: MoCo
  # v3's momentum 0.99 (a time constant of 100 updates, for runs of 10^5)
  # becomes 0.9, and tau is MoCo v3's 0.2 (its ViT setting; 1.0, the
  # default, is its ResNet one). Measured fused margins, the step compiled
  # with XLA's optimisation (su.OPTIMIZED), seeds 0-2 / 3-5 (each three
  # trained together): 0.078, 0.102, 0.094 / 0.191, 0.086, 0.172; with the
  # suite's unoptimised flags 0.074, 0.117, 0.133 / 0.188, 0.062, 0.188. The
  # defaults at 100 steps gave 0.051, 0.047, 0.074 / 0.172, -0.137, 0.105;
  # seed 4 stayed below its random encoder at 200 steps (-0.109), at 300
  # with rate 3e-3 (-0.078), at 200 with 3e-2 (-0.078) and at 100 with
  # either change alone (-0.078, -0.090); momentum 0.9 alone needed 400
  # steps (0.047). docs/claims.md, "The learning tests on other seeds".
  config = su.learning_config(moco.METHOD)
  config.loss.momentum = 0.9
  config.loss.tau = 0.2
  runs = su.train_seeds(
    moco.METHOD,
    config,
    steps=300,
    probed="fused",
    compiler_options=su.OPTIMIZED,
    # Vmapped, as measured above: looped (other rounding) seeds 3-5 gave
    # 0.207, -0.008, 0.184 (session 23).
    vmap_seeds=True,
  )
  for run in runs:
    assert run.last_loss < run.first_loss - 0.5, run
  margins = [run.margin for run in runs]
  assert min(margins) > 0.02, margins
