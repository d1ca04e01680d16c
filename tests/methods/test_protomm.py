"""ProtoMM method: interface shapes, prototype conventions, a short run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.prototypes import mpp_loss
from msjax.methods import protomm
from tests.methods import _train_util as tu

# Enough updates to pass the freeze and move the prototypes; whether
# training learns is test_learning_seeds.py's (three seeds, 300 steps).
STEPS = 20
FREEZE = 5
BATCH = 32


@pytest.fixture(scope="module")
def setup():
  config = tu.experiment_config(protomm.METHOD)
  config.loss.freeze_prototypes_steps = FREEZE
  train_src, test_src = tu.sources(config)
  v0 = tu.init(protomm.METHOD, config, tu.fixed_batch(train_src, BATCH))
  result = tu.train(
    protomm.METHOD,
    config,
    train_src,
    steps=STEPS,
    batch_size=BATCH,
    variables=v0,
    snapshot_steps=(FREEZE, FREEZE + 1),
  )
  return config, train_src, test_src, v0, result


def _protos(variables):
  return np.asarray(variables["params"]["prototypes"]["prototypes"])


def test_shapes_of_init_loss_and_embed(setup):
  config, train_src, _, v0, _ = setup
  batch = tu.fixed_batch(train_src, 8)
  c = config.model
  assert _protos(v0).shape == (c.num_prototypes, c.embed_dim)
  assert set(v0) == {"params", "batch_stats"}
  loss, (state, metrics) = jax.eval_shape(
    lambda v, b: protomm.loss_fn(v, b, jax.random.key(1), config, 0), v0, batch
  )
  assert loss.shape == ()
  assert set(state) == {"batch_stats"}
  assert jax.tree.structure(state) == jax.tree.structure(
    {"batch_stats": v0["batch_stats"]}
  )
  assert all(m.shape == () for m in metrics.values())
  emb = jax.eval_shape(lambda v, b: protomm.embed(v, b, config), v0, batch)
  assert emb["ppg"].shape == (8, c.feature_dim)
  assert emb["acc"].shape == (8, c.feature_dim)
  assert emb["fused"].shape == (8, 2 * c.feature_dim)


def test_loss_fn_metrics_determinism_and_batch_stats(setup):
  config, train_src, _, v0, _ = setup
  batch = tu.fixed_batch(train_src, BATCH, seed=3)
  loss_at = tu.jitted(protomm.METHOD, config, "loss_fn")
  step = jnp.int32(FREEZE + 1)
  loss_a, (state, metrics) = loss_at(v0, batch, jax.random.key(7), step)
  loss_b, _ = loss_at(v0, batch, jax.random.key(7), step)
  loss_c, _ = loss_at(v0, batch, jax.random.key(8), step)
  assert float(loss_a) == float(loss_b)  # same key => same loss
  assert float(loss_a) != float(loss_c)  # the key drives the augmentations
  expected = {
    "loss/mpp",
    "loss/within",
    "loss/between",
    "proto/usage_entropy",
    "proto/used_fraction",
    "proto/frozen",
  }
  assert expected <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  alpha = config.loss.alpha
  np.testing.assert_allclose(
    float(metrics["loss/mpp"]),
    alpha * float(metrics["loss/within"])
    + (1 - alpha) * float(metrics["loss/between"]),
    rtol=1e-5,
  )
  k = config.model.num_prototypes
  assert 0.0 <= float(metrics["proto/usage_entropy"]) <= np.log(k) + 1e-5
  assert float(metrics["proto/frozen"]) == 0.0
  # BatchNorm running statistics move in training mode.
  old = jax.tree.leaves(v0["batch_stats"])
  new = jax.tree.leaves(state["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(old, new, strict=True))


def test_loss_matches_kernel_on_projected_views(setup):
  """Without augmentation, views are identical: loss = mpp_loss(z, z)."""
  config, train_src, _, v0, _ = setup
  batch = tu.fixed_batch(train_src, 8)
  cfg = config.copy_and_resolve_references()
  cfg.loss.augment.ops = ()

  @jax.jit
  def both(variables, batch):
    loss, _ = protomm.loss_fn(variables, batch, jax.random.key(0), cfg, 0)
    (_, z, protos), _ = protomm._model(cfg).apply(
      variables, batch["signals"], train=True, mutable=["batch_stats"]
    )
    zz = jnp.stack([jnp.stack([z["ppg"]] * 2), jnp.stack([z["acc"]] * 2)])
    return loss, mpp_loss(
      zz,
      protos,
      tau=cfg.loss.tau,
      epsilon=cfg.loss.epsilon,
      alpha=cfg.loss.alpha,
    )[0]

  loss, expected = both(v0, batch)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


def test_prototypes_frozen_then_trained_and_unit_norm(setup):
  _, _, _, v0, result = setup
  np.testing.assert_allclose(
    _protos(result.snapshots[FREEZE]), _protos(v0), atol=1e-6
  )
  moved = _protos(result.snapshots[FREEZE + 1]) - _protos(v0)
  assert np.abs(moved).max() > 1e-4
  norms = np.linalg.norm(_protos(result.variables), axis=-1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_prototype_gradient_is_zero_only_while_frozen(setup):
  config, train_src, _, v0, _ = setup
  batch = tu.fixed_batch(train_src, 8)

  @jax.jit
  def grad_at(params, step):
    return jax.grad(
      lambda p: protomm.loss_fn(
        {**v0, "params": p}, batch, jax.random.key(0), config, step
      )[0]
    )(params)

  frozen = grad_at(v0["params"], jnp.int32(FREEZE - 1))
  free = grad_at(v0["params"], jnp.int32(FREEZE))
  assert np.all(np.asarray(frozen["prototypes"]["prototypes"]) == 0.0)
  assert np.abs(np.asarray(free["prototypes"]["prototypes"])).max() > 0
  enc = jax.tree.leaves(frozen["encoders"])
  assert any(np.abs(np.asarray(g)).max() > 0 for g in enc)


def test_post_update_renormalises_rows(setup):
  config, _, _, v0, _ = setup
  params = jax.tree.map(lambda x: x * 3.0, v0["params"])
  out = protomm.post_update(params, config, jnp.int32(0))
  norms = np.linalg.norm(_protos({"params": out}), axis=-1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-6)
  np.testing.assert_array_equal(
    out["encoders"]["encoder_ppg"]["stem_conv"]["kernel"],
    params["encoders"]["encoder_ppg"]["stem_conv"]["kernel"],
  )
