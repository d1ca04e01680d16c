"""COCOA: loss vs numpy, gradients, interface, learning over three seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from msjax.methods import cocoa
from tests.methods import _numpy_refs as ref
from tests.methods import _seeds_util as su
from tests.methods import _train_util as tu


def _z(num_mod=3):
  return np.random.default_rng(0).normal(size=(num_mod, 5, 4))


@pytest.mark.parametrize("tau,neg_weight", [(0.1, 0.125), (0.5, 1.0)])
def test_loss_matches_numpy(x64, tau, neg_weight):
  z = _z()
  loss, (pos, neg) = cocoa.cocoa_loss(
    jnp.asarray(z), tau=tau, neg_weight=neg_weight
  )
  np.testing.assert_allclose(loss, ref.cocoa(z, tau, neg_weight), rtol=1e-10)
  np.testing.assert_allclose(loss, pos + neg_weight * neg, rtol=1e-12)
  np.testing.assert_allclose(pos, ref.cocoa(z, tau, 0.0), rtol=1e-10)


def test_gradient_matches_finite_differences(x64):
  check_grads(
    lambda z: cocoa.cocoa_loss(z, tau=0.5, neg_weight=0.5)[0],
    (jnp.asarray(_z(2)),),
    order=1,
    modes=("rev",),
    atol=1e-6,
    rtol=1e-6,
  )


def test_bad_shapes_are_rejected():
  with pytest.raises(ValueError, match="M >= 2"):
    cocoa.cocoa_loss(jnp.ones((1, 4, 3)), tau=0.1, neg_weight=0.1)


def test_interface_shapes_and_metric_names():
  config = tu.experiment_config(cocoa.METHOD)
  batch = tu.fixed_batch(tu.sources(config)[0], 8)
  variables = jax.eval_shape(
    lambda b: cocoa.init(jax.random.key(0), config, b), batch
  )
  assert set(variables) == {"params", "batch_stats"}
  loss, (state, metrics) = jax.eval_shape(
    lambda v, b: cocoa.loss_fn(v, b, jax.random.key(1), config, 0),
    variables,
    batch,
  )
  assert loss.shape == () and set(state) == {"batch_stats"}
  assert set(metrics) == {"loss/cocoa", "loss/cocoa_pos", "loss/cocoa_neg"}
  emb = jax.eval_shape(lambda v, b: cocoa.embed(v, b, config), variables, batch)
  f = config.model.feature_dim
  assert {k: v.shape for k, v in emb.items()} == {
    "fused": (8, 2 * f),
    "ppg": (8, f),
    "acc": (8, f),
  }


def test_training_beats_random_probe_over_three_seeds():
  # Measured ppg margins at 300 steps, the step compiled with XLA's
  # optimisation (su.OPTIMIZED), seeds 0-2 / 3-5 (each three trained
  # together): 0.160, 0.156, 0.270 / 0.160, 0.051, 0.184; with the suite's
  # unoptimised flags 0.160, 0.125, 0.211 / 0.230, 0.047, 0.230; with
  # neither (JAX's defaults) 0.176, 0.160, 0.227 / 0.148, 0.035, 0.219. At
  # 150 steps seed 4 gave -0.008 (docs/claims.md, "The learning tests on
  # other seeds").
  config = su.learning_config(cocoa.METHOD)
  runs = su.train_seeds(
    cocoa.METHOD,
    config,
    steps=300,
    probed="ppg",
    compiler_options=su.OPTIMIZED,
    # Vmapped, as measured above: looped (other rounding) seeds 3-5 gave
    # 0.227, 0.027, 0.230 (session 23).
    vmap_seeds=True,
  )
  for run in runs:
    assert run.last_loss < run.first_loss - 1.0, run
  margins = [run.margin for run in runs]
  assert min(margins) > 0.03, margins
