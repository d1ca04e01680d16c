"""Classification metrics: accuracy, macro-F1, mean average precision.

Host-side numpy functions (evaluation runs once per probe, on gathered
predictions; numpy avoids per-shape XLA compilation). ``N`` is the number of
examples and ``K`` the number of classes. Inputs may be numpy or JAX arrays.
"""

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
  "accuracy",
  "classification_metrics",
  "confusion_matrix",
  "macro_f1",
  "mean_average_precision",
]


def _labels(y: ArrayLike, name: str) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(
      f"{name} must be a 1-D integer array [N], got {y.dtype} of shape "
      f"{y.shape}."
    )
  if y.shape[0] == 0:
    raise ValueError(f"{name} is empty: metrics need at least one example.")
  return y


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, ...]:
  y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
  if y_true.shape != y_pred.shape:
    raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ.")
  return y_true, y_pred


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
  """Fraction of ``y_pred == y_true`` over ``[N]`` integer labels."""
  y_true, y_pred = _pair(y_true, y_pred)
  return float(np.mean(y_true == y_pred))


def confusion_matrix(
  y_true: ArrayLike, y_pred: ArrayLike, *, num_classes: int
) -> np.ndarray:
  """``int64 [K, K]``: entry ``[i, j]`` counts true ``i`` predicted ``j``.

  Raises:
    ValueError: if a label lies outside ``0..K-1``.
  """
  y_true, y_pred = _pair(y_true, y_pred)
  for name, y in (("y_true", y_true), ("y_pred", y_pred)):
    if y.min() < 0 or y.max() >= num_classes:
      raise ValueError(
        f"{name} must be in [0, {num_classes}), got [{y.min()}, {y.max()}]."
      )
  flat = y_true.astype(np.int64) * num_classes + y_pred
  counts = np.bincount(flat, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)


def macro_f1(
  y_true: ArrayLike, y_pred: ArrayLike, *, num_classes: int
) -> float:
  """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN).

  The mean runs over the classes that occur in ``y_true`` or ``y_pred``
  (scikit-learn's default label set), so absent classes do not count as 0.
  """
  cm = confusion_matrix(y_true, y_pred, num_classes=num_classes)
  tp = np.diag(cm).astype(np.float64)
  denom = cm.sum(axis=0) + cm.sum(axis=1)  # = 2TP + FP + FN
  present = denom > 0
  return float(np.mean(2 * tp[present] / denom[present]))


def _average_precision(positive: np.ndarray, score: np.ndarray) -> float:
  """AP of one class: mean over positives of precision at their score.

  Precision at threshold ``s`` counts every example scoring ``>= s`` (tied
  scores share one threshold, as in scikit-learn's
  ``average_precision_score``).
  """
  order = np.argsort(-score, kind="stable")
  sorted_score, sorted_pos = score[order], positive[order]
  cum_pos = np.cumsum(sorted_pos)
  # examples scoring >= each sorted score (the end of its tie group)
  count = np.searchsorted(-sorted_score, -sorted_score, side="right")
  precision = cum_pos[count - 1] / count
  return float(np.sum(precision[sorted_pos]) / np.sum(sorted_pos))


def mean_average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
  """One-vs-rest average precision averaged over classes present in y_true.

  Args:
    y_true: ``[N]`` integer labels in ``0..K-1``.
    scores: ``[N, K]`` class scores (probabilities or logits; only the order
      within each column matters).

  Returns:
    mAP as a float.
  """
  y_true = _labels(y_true, "y_true")
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 2 or scores.shape[0] != y_true.shape[0]:
    raise ValueError(
      f"scores must be [N, K] with N={y_true.shape[0]}, got {scores.shape}."
    )
  if y_true.min() < 0 or y_true.max() >= scores.shape[1]:
    raise ValueError(f"y_true must be in [0, {scores.shape[1]}).")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores contain NaN or inf.")
  aps = [
    _average_precision(y_true == c, scores[:, c]) for c in np.unique(y_true)
  ]
  return float(np.mean(aps))


def classification_metrics(
  y_true: ArrayLike, scores: ArrayLike
) -> dict[str, float]:
  """Accuracy, macro-F1 and mAP from ``[N, K]`` scores (argmax predictions).

  Returns:
    ``{"accuracy", "macro_f1", "map"}`` floats.
  """
  scores = np.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(f"scores must be [N, K], got {scores.shape}.")
  y_pred = np.argmax(scores, axis=1)
  return {
    "accuracy": accuracy(y_true, y_pred),
    "macro_f1": macro_f1(y_true, y_pred, num_classes=scores.shape[1]),
    "map": mean_average_precision(y_true, scores),
  }
