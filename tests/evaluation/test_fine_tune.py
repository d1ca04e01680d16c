"""The fine-tune protocol: a linear head and the encoder trained end to end."""

import jax
import jax.numpy as jnp
import numpy as np

from msjax.evaluation import fine_tune
from msjax.evaluation.classification_metrics import classification_metrics
from tests.train import toy


def _setup(steps, learning_rate=1e-2):
  config = toy.get_config()
  with config.unlocked():
    config.data.num_examples = 96
    config.eval.fine_tune_steps = steps
    config.eval.fine_tune_learning_rate = learning_rate
    config.eval.batch_size = 32
  sources = (
    toy.make_source(config.data, "train"),
    toy.make_source(config.data, "test"),
  )
  variables = toy.init(jax.random.key(0), config, sources[0].get(np.arange(2)))
  return config, sources, variables


def test_zero_steps_scores_the_initial_head():
  """No training: the metrics are those of the random head, computed here."""
  config, sources, variables = _setup(steps=0)
  key = jax.random.key(5)
  got = fine_tune.fine_tune_one(
    toy.METHOD, variables, config, sources, "a", key
  )
  test = sources[1].get(np.arange(sources[1].num_examples))
  features = np.asarray(toy.embed(variables, test, config)["a"])
  w = np.asarray(jax.random.normal(key, (features.shape[1], 3)))
  scores = features @ (w / np.sqrt(features.shape[1]))
  expected = classification_metrics(test["label"], scores)
  assert got.keys() == expected.keys()
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], float(value), rtol=1e-5, err_msg=name)


def _best_accuracy_of_two_valued_features(labels, groups):
  """The best any classifier of a feature with two values can score."""
  hits = sum(np.bincount(labels[groups == g]).max() for g in np.unique(groups))
  return hits / len(labels)


def test_encoder_is_trained_not_only_the_head():
  """Modality a's encoder starts with identical columns, so its features
  take two values (the sign of one projection) and no head on them can beat
  a two-group classifier; fine-tuning separates the columns and beats it."""
  config, sources, variables = _setup(steps=150)
  encoder = variables["params"]["encoders"]["a"]
  column = encoder[:, :1]
  variables["params"]["encoders"]["a"] = jnp.tile(column, (1, encoder.shape[1]))
  test = sources[1].get(np.arange(sources[1].num_examples))
  flat = test["signals"]["a"].reshape(len(test["label"]), -1)
  groups = (flat @ np.asarray(column))[:, 0] > 0
  frozen_bound = _best_accuracy_of_two_valued_features(test["label"], groups)
  got = fine_tune.fine_tune_one(
    toy.METHOD, variables, config, sources, "a", jax.random.key(1)
  )
  assert frozen_bound < 0.8, frozen_bound  # the toy data has three classes
  assert got["accuracy"] >= frozen_bound + 0.15, (got, frozen_bound)


def test_fine_tune_all_covers_every_embedding_key():
  config, sources, variables = _setup(steps=30)
  scores = fine_tune.fine_tune_all(
    toy.METHOD, variables, config, sources, jax.random.key(2)
  )
  assert set(scores) == {"fused", "a", "b"}
  for metrics in scores.values():
    assert 0.0 <= metrics["accuracy"] <= 1.0
  # The classes are well separated in modality b: tuning reaches them.
  assert scores["b"]["accuracy"] >= 0.9, scores
