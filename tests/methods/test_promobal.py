"""ProMoBal method: interface shapes, SaMoBal paths, losses, short training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.norms import l2_normalize
from msjax.kernels.selection import samobal_infer
from msjax.methods import promobal
from tests.methods import _train_util as tu

STEPS = 100
BATCH = 32


@pytest.fixture(scope="module")
def setup():
  config = tu.experiment_config(promobal.METHOD)
  train_src, test_src = tu.sources(config)
  v0 = tu.init(promobal.METHOD, config, tu.fixed_batch(train_src, BATCH))
  result = tu.train(
    promobal.METHOD,
    config,
    train_src,
    steps=STEPS,
    batch_size=BATCH,
    variables=v0,
  )
  return config, train_src, test_src, v0, result


def test_default_config_paper_lambdas():
  crema = promobal.default_config("paper")
  assert (crema.loss.lam_uni, crema.loss.lam_fus, crema.loss.lam_ca) == (
    0.7,
    1.0,
    3.0,
  )
  assert crema.loss.lam_ce == 1.0
  assert (crema.loss.tau, crema.loss.tau_g, crema.loss.tau_fd) == (
    0.07,
    1.0,
    1.0,
  )
  assert (crema.loss.epsilon, crema.loss.sinkhorn_iters) == (0.1, 20)
  kinetics = promobal.default_config("paper", dataset="kinetics_sounds")
  assert (kinetics.loss.lam_uni, kinetics.loss.lam_fus) == (1.0, 3.0)
  with pytest.raises(ValueError, match="dataset"):
    promobal.default_config("paper", dataset="nope")


def test_shapes_of_init_loss_and_embed(setup):
  config, train_src, _, v0, _ = setup
  batch = tu.fixed_batch(train_src, 8)
  c = config.model
  params = v0["params"]
  assert params["prototypes"]["prototypes"].shape == (3, c.feature_dim)
  assert params["classifier_ppg"]["weight"].shape == (3, c.feature_dim)
  loss, (state, metrics) = jax.eval_shape(
    lambda v, b: promobal.loss_fn(v, b, jax.random.key(1), config, 0), v0, batch
  )
  assert loss.shape == ()
  assert set(state) == {"batch_stats"}
  assert all(m.shape == () for m in metrics.values())
  emb = jax.eval_shape(lambda v, b: promobal.embed(v, b, config), v0, batch)
  assert {k: v.shape for k, v in emb.items()} == {
    "fused": (8, c.feature_dim),
    "ppg": (8, c.feature_dim),
    "acc": (8, c.feature_dim),
  }


def test_predict_fused_is_spec_inference_and_classifiers_their_sum(setup):
  config, train_src, _, _, result = setup
  batch = tu.fixed_batch(train_src, 8)
  variables = result.variables
  out = jax.jit(lambda v, b: promobal.predict(v, b, config))(variables, batch)
  assert set(out) == {"fused", "ppg", "acc", "classifiers"}
  emb = promobal.embed(variables, batch, config)
  protos = np.asarray(variables["params"]["prototypes"]["prototypes"])
  protos = protos / np.linalg.norm(protos, axis=-1, keepdims=True)
  np.testing.assert_allclose(
    out["fused"], np.asarray(emb["fused"]) @ protos.T, rtol=1e-5, atol=1e-6
  )
  for m in ("ppg", "acc"):  # z[m] @ W[m].T + b[m] (SPEC §3.5)
    head = variables["params"][f"classifier_{m}"]
    expected = np.asarray(emb[m]) @ np.asarray(head["weight"]).T + np.asarray(
      head["bias"]
    )
    np.testing.assert_allclose(out[m], expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    out["classifiers"], out["ppg"] + out["acc"], rtol=1e-6, atol=1e-6
  )


def test_missing_labels_rejected(setup):
  config, train_src, _, v0, _ = setup
  batch = dict(tu.fixed_batch(train_src, 8))
  del batch["label"]
  with pytest.raises(ValueError, match="label"):
    promobal.loss_fn(v0, batch, jax.random.key(0), config, 0)


def test_loss_fn_metrics_total_and_determinism(setup):
  config, train_src, _, v0, _ = setup
  batch = tu.fixed_batch(train_src, BATCH, seed=3)
  loss_at = tu.jitted(promobal.METHOD, config, "loss_fn")
  loss_a, (state, metrics) = loss_at(v0, batch, jax.random.key(7), 0)
  loss_b, _ = loss_at(v0, batch, jax.random.key(7), 0)
  loss_c, (_, metrics_c) = loss_at(v0, batch, jax.random.key(8), 0)
  assert float(loss_a) == float(loss_b)
  # The key drives the Gumbel selection, hence L_fus.
  assert float(metrics["loss/fus"]) != float(metrics_c["loss/fus"])
  names = {"loss/uni", "loss/ce", "loss/fus", "loss/ca", "acc/fused"}
  names |= {"geometry/FC", "geometry/RS", "sel_rate/ppg", "sel_rate/acc"}
  assert names <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  c = config.loss
  total = (
    c.lam_uni * metrics["loss/uni"]
    + c.lam_ce * metrics["loss/ce"]
    + c.lam_fus * metrics["loss/fus"]
    + c.lam_ca * metrics["loss/ca"]
  )
  np.testing.assert_allclose(float(loss_a), float(total), rtol=1e-5)
  # Per-dimension hard selection: the modality rates sum to 1.
  rates = float(metrics["sel_rate/ppg"]) + float(metrics["sel_rate/acc"])
  np.testing.assert_allclose(rates, 1.0, atol=1e-6)
  assert 0.0 <= float(metrics["acc/fused"]) <= 1.0
  old = jax.tree.leaves(v0["batch_stats"])
  new = jax.tree.leaves(state["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(old, new, strict=True))


def test_every_loss_term_reaches_its_parameters(setup):
  config, train_src, _, v0, _ = setup
  batch = tu.fixed_batch(train_src, 8)
  terms = ("loss/uni", "loss/ce", "loss/fus", "loss/ca")

  @jax.jit
  def term_grads(params):
    def terms_of(p):
      _, (_, metrics) = promobal.loss_fn(
        {**v0, "params": p}, batch, jax.random.key(0), config, 0
      )
      return jnp.stack([metrics[t] for t in terms])

    return jax.jacrev(terms_of)(params)

  grads = term_grads(v0["params"])

  def reaches(tree, i):
    return max(np.abs(np.asarray(g[i])).max() for g in jax.tree.leaves(tree))

  for i, term in enumerate(terms):
    # CE trains classifiers+encoders, CA classifiers+prototypes, the
    # prototype losses (Pro-UCL, Pro-FD) prototypes+encoders.
    assert (reaches(grads["prototypes"], i) > 0) == (term != "loss/ce"), term
    clf = reaches(grads["classifier_acc"], i) > 0
    assert clf == (term in ("loss/ce", "loss/ca")), term
    assert (reaches(grads["encoders"], i) > 0) == (term != "loss/ca"), term


def test_embed_fused_is_samobal_inference(setup):
  config, train_src, _, _, result = setup
  batch = train_src.get(np.arange(128))
  variables = result.variables
  emb = tu.jitted(promobal.METHOD, config, "embed")(variables, batch)
  z = jnp.stack([emb["ppg"], emb["acc"]])
  np.testing.assert_allclose(
    np.linalg.norm(np.asarray(z), axis=-1), 1.0, atol=1e-5
  )
  protos = l2_normalize(variables["params"]["prototypes"]["prototypes"])
  expected = samobal_infer(z, protos, score="own")
  np.testing.assert_allclose(emb["fused"], expected.z_fus, atol=1e-6)


def test_training_lowers_loss_and_beats_random_probe(setup):
  config, train_src, test_src, v0, result = setup
  batch = tu.fixed_batch(train_src, BATCH, seed=3)
  loss_at = tu.jitted(promobal.METHOD, config, "loss_fn")
  before, _ = loss_at(v0, batch, jax.random.key(7), 0)
  after, (_, metrics) = loss_at(result.variables, batch, jax.random.key(7), 0)
  assert float(after) < 0.7 * float(before)
  assert float(metrics["acc/fused"]) > 0.6
  random_acc, trained_acc = tu.probe_accuracies(
    promobal.METHOD, [v0, result.variables], config, train_src, test_src
  )
  assert trained_acc > random_acc + 0.05
