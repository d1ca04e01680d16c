"""Tests of the linear probe and kNN evaluation protocols."""

import jax
import numpy as np
import pytest

from msjax.evaluation import probes

# Every probe here has <= 256 train rows, <= 128 features and <= 8 classes,
# so all linear probes share one compilation.
N_TRAIN, N_TEST, D = 240, 400, 12


def _clusters(seed: int, num_classes: int, spread: float):
  """Gaussian class clusters around random centres; returns train/test."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, D)) * 3.0
  y = rng.integers(0, num_classes, N_TRAIN + N_TEST)
  x = centres[y] + spread * rng.normal(size=(len(y), D))
  return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def _objective_grad(head, x, y, l2, num_classes):
  """Independent numpy gradient of mean CE + l2/2 |W|^2 (standardised)."""
  z = (x - x.mean(0)) / x.std(0)
  logits = z @ head.weights + head.bias
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  residual = (p - np.eye(num_classes)[y]) / len(y)
  return z.T @ residual + l2 * head.weights, residual.sum(0)


def test_separable_data_reaches_full_accuracy():
  train_x, train_y, test_x, test_y = _clusters(0, 4, spread=0.3)
  result = probes.linear_probe(
    train_x, train_y, test_x, test_y, num_classes=4, l2=1e-4
  )
  assert result.metrics["accuracy"] >= 0.995
  assert result.metrics["macro_f1"] >= 0.99
  assert result.metrics["map"] >= 0.999
  assert result.probabilities.shape == (N_TEST, 4)
  np.testing.assert_allclose(result.probabilities.sum(1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(
    result.predictions, result.probabilities.argmax(1)
  )


def test_random_labels_give_chance():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(N_TRAIN + N_TEST, D))
  y = rng.integers(0, 3, N_TRAIN + N_TEST)
  result = probes.linear_probe(
    x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], num_classes=3
  )
  assert abs(result.metrics["accuracy"] - 1 / 3) < 0.08


@pytest.mark.parametrize("num_classes", [2, 5])
def test_fit_reaches_the_regularised_optimum(num_classes):
  # Overlapping clusters: a finite optimum; its gradient must vanish, which
  # also shows that the row/feature/class padding leaves the problem intact.
  train_x, train_y, _, _ = _clusters(2, num_classes, spread=2.0)
  l2 = 1e-2
  head = probes.fit_softmax_regression(
    train_x, train_y, num_classes=num_classes, l2=l2, num_steps=100
  )
  assert head.weights.shape == (D, num_classes)
  grad_w, grad_b = _objective_grad(head, train_x, train_y, l2, num_classes)
  assert np.abs(grad_w).max() < 1e-4
  assert np.abs(grad_b).max() < 1e-4


def test_deterministic_and_invariant_to_feature_affine_maps():
  train_x, train_y, test_x, test_y = _clusters(3, 3, spread=2.0)
  first = probes.linear_probe(train_x, train_y, test_x, test_y, num_classes=3)
  second = probes.linear_probe(train_x, train_y, test_x, test_y, num_classes=3)
  np.testing.assert_array_equal(first.probabilities, second.probabilities)
  # Standardisation makes per-feature scale and shift irrelevant.
  scale, shift = np.linspace(0.01, 100.0, D), np.linspace(-50.0, 50.0, D)
  moved = probes.linear_probe(
    train_x * scale + shift,
    train_y,
    test_x * scale + shift,
    test_y,
    num_classes=3,
  )
  np.testing.assert_allclose(
    moved.probabilities, first.probabilities, atol=2e-3
  )


def test_constant_feature_is_harmless():
  train_x, train_y, test_x, test_y = _clusters(0, 4, spread=0.3)
  train_x, test_x = train_x.copy(), test_x.copy()
  train_x[:, 0] = 5.0
  test_x[:, 0] = 5.0
  result = probes.linear_probe(train_x, train_y, test_x, test_y, num_classes=4)
  assert np.all(np.isfinite(result.probabilities))
  assert result.metrics["accuracy"] >= 0.99


def _brute_knn(train_x, train_y, test_x, num_classes, k, temperature):
  scores = np.zeros((len(test_x), num_classes))
  for i, q in enumerate(test_x):
    sims = [
      float(q @ t / (np.linalg.norm(q) * np.linalg.norm(t))) for t in train_x
    ]
    for j in np.argsort(sims)[::-1][:k]:
      scores[i, train_y[j]] += np.exp(sims[j] / temperature)
  return scores / scores.sum(1, keepdims=True)


def test_knn_matches_brute_force():
  rng = np.random.default_rng(4)
  train_x, test_x = rng.normal(size=(50, 6)), rng.normal(size=(30, 6))
  train_y, test_y = rng.integers(0, 3, 50), rng.integers(0, 3, 30)
  result = probes.knn_classify(
    train_x,
    train_y,
    test_x,
    test_y,
    num_classes=3,
    k=7,
    temperature=0.1,
    chunk_size=8,
  )
  expected = _brute_knn(train_x, train_y, test_x, 3, 7, 0.1)
  np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(result.predictions, expected.argmax(1))
  assert result.metrics["accuracy"] == pytest.approx(
    np.mean(expected.argmax(1) == test_y)
  )


def test_knn_on_clusters_and_self_retrieval():
  train_x, train_y, test_x, test_y = _clusters(5, 4, spread=0.3)
  result = probes.knn_classify(
    train_x, train_y, test_x, test_y, num_classes=4, k=10
  )
  assert result.metrics["accuracy"] >= 0.99
  own = probes.knn_classify(train_x, train_y, train_x, num_classes=4, k=1)
  np.testing.assert_array_equal(own.predictions, train_y)
  assert own.metrics == {}


def test_bad_inputs_rejected():
  x, y = np.ones((10, 3)), np.zeros(10, int)
  with pytest.raises(ValueError, match="train_y must be in"):
    probes.linear_probe(x, y - 1, x, y, num_classes=2)
  with pytest.raises(ValueError, match="NaN"):
    probes.linear_probe(x * np.nan, y, x, y, num_classes=2)
  with pytest.raises(ValueError, match="D="):
    probes.linear_probe(x, y, x[:, :2], y, num_classes=2)
  with pytest.raises(ValueError, match="num_classes"):
    probes.fit_softmax_regression(x, y, num_classes=1)
  with pytest.raises(ValueError, match="k must be"):
    probes.knn_classify(x, y, x, num_classes=2, k=11)
  with pytest.raises(ValueError, match="temperature"):
    probes.knn_classify(x, y, x, num_classes=2, k=3, temperature=0.0)


def test_runs_under_transfer_guard():
  # Only explicit host<->device transfers: usable inside a guarded loop.
  train_x, train_y, test_x, test_y = _clusters(6, 3, spread=1.0)
  with jax.transfer_guard("disallow"):
    probe = probes.linear_probe(train_x, train_y, test_x, test_y, num_classes=3)
    knn = probes.knn_classify(
      train_x, train_y, test_x, test_y, num_classes=3, k=10
    )
  assert probe.metrics["accuracy"] > 0.9 and knn.metrics["accuracy"] > 0.9
