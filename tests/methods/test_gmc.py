"""GMC: loss vs numpy, gradients, interface, learning over three seeds."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from msjax.methods import gmc
from tests.methods import _numpy_refs as ref
from tests.methods import _seeds_util as su
from tests.methods import _train_util as tu

TAU = 0.3


def _inputs():
  rng = np.random.default_rng(0)
  return rng.normal(size=(2, 6, 5)), rng.normal(size=(6, 5))


def test_loss_matches_numpy(x64):
  z, z_joint = _inputs()
  loss, per_mod = gmc.gmc_loss(jnp.asarray(z), jnp.asarray(z_joint), tau=TAU)
  expected = [ref.nt_xent(z[m], z_joint, TAU) for m in range(2)]
  np.testing.assert_allclose(per_mod, expected, rtol=1e-10)
  np.testing.assert_allclose(loss, sum(expected), rtol=1e-10)


def test_gradient_matches_finite_differences(x64):
  z, z_joint = _inputs()
  check_grads(
    lambda a, b: gmc.gmc_loss(a, b, tau=TAU)[0],
    (jnp.asarray(z), jnp.asarray(z_joint)),
    order=1,
    modes=("rev",),
    atol=1e-6,
    rtol=1e-6,
  )


def test_interface_shapes_and_metric_names():
  config = tu.experiment_config(gmc.METHOD)
  batch = tu.fixed_batch(tu.sources(config)[0], 8)
  variables = jax.eval_shape(
    lambda b: gmc.init(jax.random.key(0), config, b), batch
  )
  assert set(variables) == {"params", "batch_stats"}
  assert {"encoders", "joint_encoders", "joint_head", "projector"} <= set(
    variables["params"]
  )
  loss, (state, metrics) = jax.eval_shape(
    lambda v, b: gmc.loss_fn(v, b, jax.random.key(1), config, 0),
    variables,
    batch,
  )
  assert loss.shape == () and set(state) == {"batch_stats"}
  assert set(metrics) == {"loss/gmc", "loss/gmc/ppg", "loss/gmc/acc"}
  emb = jax.eval_shape(lambda v, b: gmc.embed(v, b, config), variables, batch)
  f = config.model.feature_dim
  assert {k: v.shape for k, v in emb.items()} == {
    "fused": (8, 2 * f),
    "joint": (8, f),
    "ppg": (8, f),
    "acc": (8, f),
  }


def test_training_beats_random_probe_over_three_seeds():
  # Measured ppg margins at 200 steps, the step compiled with XLA's
  # optimisation (su.OPTIMIZED), seeds 0-2 / 3-5 (each three trained
  # together): 0.215, 0.148, 0.246 / 0.176, 0.117, 0.227; with the suite's
  # unoptimised flags 0.191, 0.184, 0.219 / 0.156, 0.090, 0.227; with
  # neither (JAX's defaults) 0.180, 0.160, 0.234 / 0.133, 0.105, 0.219. At
  # 100 steps seeds 3-5 gave 0.016, -0.008, 0.160 (docs/claims.md, "The
  # learning tests on other seeds"). Looped (session 23): 0.223, 0.164,
  # 0.238 / 0.133, 0.094, 0.203.
  config = su.learning_config(gmc.METHOD)
  runs = su.train_seeds(
    gmc.METHOD,
    config,
    steps=200,
    probed="ppg",
    compiler_options=su.OPTIMIZED,
  )
  for run in runs:
    assert run.last_loss < run.first_loss - 2.0, run
  margins = [run.margin for run in runs]
  assert min(margins) > 0.03, margins
