"""Tests of accuracy, macro-F1 and mAP against brute-force definitions."""

import numpy as np
import pytest

from msjax.evaluation import classification_metrics as cm


def _brute_macro_f1(y_true, y_pred):
  """Per-class precision/recall by direct counting; sklearn label set."""
  f1s = []
  for c in sorted(set(y_true.tolist()) | set(y_pred.tolist())):
    tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == c == p)
    predicted = sum(1 for p in y_pred if p == c)
    actual = sum(1 for t in y_true if t == c)
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1s.append(
      0.0
      if precision + recall == 0
      else 2 * precision * recall / (precision + recall)
    )
  return sum(f1s) / len(f1s)


def _brute_ap(positive, score):
  """Slow AP: for each positive, precision among items scoring >= it."""
  precisions = []
  for i in range(len(score)):
    if positive[i]:
      above = [j for j in range(len(score)) if score[j] >= score[i]]
      precisions.append(sum(positive[j] for j in above) / len(above))
  return sum(precisions) / len(precisions)


def _brute_map(y_true, scores):
  classes = sorted(set(y_true.tolist()))
  return sum(_brute_ap(y_true == c, scores[:, c]) for c in classes) / len(
    classes
  )


def test_hand_worked_case():
  y_true = np.array([0, 0, 1, 1, 2])
  y_pred = np.array([0, 1, 1, 1, 0])
  assert cm.accuracy(y_true, y_pred) == pytest.approx(3 / 5)
  # class 0: P=1/2 R=1/2 F1=1/2; class 1: P=2/3 R=1 F1=4/5; class 2: F1=0.
  assert cm.macro_f1(y_true, y_pred, num_classes=4) == pytest.approx(
    (0.5 + 0.8 + 0.0) / 3
  )
  np.testing.assert_array_equal(
    cm.confusion_matrix(y_true, y_pred, num_classes=3),
    [[1, 1, 0], [0, 2, 0], [1, 0, 0]],
  )
  # AP of scores ranking positives 1st and 3rd: (1/1 + 2/3) / 2.
  y = np.array([1, 0, 1, 0])
  scores = np.stack([-np.array([0.9, 0.8, 0.7, 0.1]), [0.9, 0.8, 0.7, 0.1]], 1)
  # class 1 AP = 5/6; class 0 (positives at ranks 2 and 4 of -score): the
  # order is items 3, 2, 1, 0 -> positives 3 and 1 at ranks 1 and 3 -> 5/6.
  assert cm.mean_average_precision(y, scores) == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", range(5))
def test_against_brute_force(seed):
  rng = np.random.default_rng(seed)
  k = 5
  y_true = rng.integers(0, k, 60)
  y_true[y_true == 4] = 3  # class 4 never occurs in y_true
  y_pred = np.where(rng.random(60) < 0.6, y_true, rng.integers(0, k, 60))
  # Coarse scores create ties, which must share a threshold.
  scores = np.round(rng.random((60, k)), 1)
  assert cm.accuracy(y_true, y_pred) == pytest.approx(np.mean(y_true == y_pred))
  assert cm.macro_f1(y_true, y_pred, num_classes=k) == pytest.approx(
    _brute_macro_f1(y_true, y_pred)
  )
  assert cm.mean_average_precision(y_true, scores) == pytest.approx(
    _brute_map(y_true, scores)
  )


def test_perfect_and_reversed_rankings():
  y = np.array([0, 1, 2, 0, 1, 2])
  one_hot = np.eye(3)[y]
  assert cm.mean_average_precision(y, one_hot) == pytest.approx(1.0)
  metrics = cm.classification_metrics(y, one_hot)
  assert metrics == pytest.approx(
    {"accuracy": 1.0, "macro_f1": 1.0, "map": 1.0}
  )
  # Worst ranking: both positives tie last, sharing the threshold that
  # admits all 6 items -> precision 2/6 for each.
  assert cm.mean_average_precision(y, -one_hot) == pytest.approx(1 / 3)
  # Worst ranking without ties: positives at ranks 5 and 6 -> (1/5 + 2/6) / 2.
  worst = -one_hot - 0.01 * np.arange(6)[:, None]
  assert cm.mean_average_precision(y, worst) == pytest.approx(
    (1 / 5 + 2 / 6) / 2
  )


def test_invariant_to_monotone_score_transform():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 4, 100)
  scores = rng.normal(size=(100, 4))
  assert cm.mean_average_precision(y, scores) == pytest.approx(
    cm.mean_average_precision(y, np.exp(3 * scores) + 7)
  )


def test_bad_inputs_rejected():
  with pytest.raises(ValueError, match="y_pred"):
    cm.accuracy(np.array([0, 1]), np.array([0.0, 1.0]))
  with pytest.raises(ValueError, match="differ"):
    cm.accuracy(np.array([0, 1]), np.array([0]))
  with pytest.raises(ValueError, match="empty"):
    cm.accuracy(np.array([], int), np.array([], int))
  with pytest.raises(ValueError, match="y_true must be in"):
    cm.macro_f1(np.array([0, 3]), np.array([0, 1]), num_classes=3)
  with pytest.raises(ValueError, match="scores"):
    cm.mean_average_precision(np.array([0, 1]), np.zeros((3, 2)))
  with pytest.raises(ValueError, match="NaN"):
    cm.mean_average_precision(np.array([0, 1]), np.full((2, 2), np.nan))
