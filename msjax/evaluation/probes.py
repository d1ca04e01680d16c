"""Evaluation protocols on frozen embeddings: linear probe and kNN.

``N`` train examples, ``M`` test examples, ``D`` feature width, ``K`` classes.

* :func:`linear_probe` -- multinomial logistic regression on standardised
  features (statistics from the train set), L2-regularised weights, fitted
  full-batch by L-BFGS (``optax.lbfgs``, backtracking line search) for a fixed
  number of iterations under ``jit``. Deterministic: zero initialisation, no
  randomness.
* :func:`knn_classify` -- cosine-similarity kNN with temperature-weighted
  votes (``exp(sim / temperature)``), as in Wu et al. 2018 and DINO.
* :func:`fit_softmax_regression` / :func:`head_logits` /
  :func:`softmax_regression_loss` -- the head trainer and its objective, for
  reuse (e.g. a fine-tuning protocol that starts from a fitted head).

Inputs may be numpy or JAX arrays; host-side bookkeeping (checks,
standardisation, metrics) is numpy, the optimisation and neighbour search are
jitted. The head trainer lives in
:mod:`msjax.evaluation.softmax_regression` and is re-exported here.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from msjax.evaluation.classification_metrics import classification_metrics
from msjax.evaluation.softmax_regression import (
  LinearHead,
  check_features,
  check_labels,
  fit_softmax_regression,
  head_logits,
  softmax_regression_loss,
)

__all__ = [
  "KnnResult",
  "LinearHead",
  "ProbeResult",
  "fit_softmax_regression",
  "head_logits",
  "knn_classify",
  "linear_probe",
  "softmax_regression_loss",
]


class ProbeResult(NamedTuple):
  """Linear-probe output on the test set.

  Attributes:
    predictions: ``int32 [M]`` argmax classes.
    probabilities: ``float32 [M, K]``.
    metrics: ``{"accuracy", "macro_f1", "map"}`` floats.
    head: the fitted :class:`LinearHead`.
  """

  predictions: np.ndarray
  probabilities: np.ndarray
  metrics: dict[str, float]
  head: LinearHead


class KnnResult(NamedTuple):
  """kNN output on the test set.

  Attributes:
    predictions: ``int32 [M]`` argmax of the scores (ties: lowest class).
    scores: ``float32 [M, K]`` normalised weighted votes (rows sum to 1).
    metrics: ``{"accuracy", "macro_f1", "map"}`` floats, or ``{}`` when no
      test labels were given.
  """

  predictions: np.ndarray
  scores: np.ndarray
  metrics: dict[str, float]


def _softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(axis=-1, keepdims=True)
  prob = np.exp(shifted)
  return (prob / prob.sum(axis=-1, keepdims=True)).astype(np.float32)


def linear_probe(
  train_x: ArrayLike,
  train_y: ArrayLike,
  test_x: ArrayLike,
  test_y: ArrayLike,
  *,
  num_classes: int,
  l2: float = 1e-3,
  num_steps: int = 100,
  standardize: bool = True,
) -> ProbeResult:
  """Linear-probe protocol: fit on train embeddings, evaluate on test.

  Args:
    train_x: ``[N, D]`` train embeddings.
    train_y: ``[N]`` train labels.
    test_x: ``[M, D]`` test embeddings.
    test_y: ``[M]`` test labels.
    num_classes: ``K``.
    l2: weight-decay strength (see :func:`fit_softmax_regression`).
    num_steps: L-BFGS iterations.
    standardize: standardise features with train statistics.

  Returns:
    A :class:`ProbeResult`.
  """
  head = fit_softmax_regression(
    train_x,
    train_y,
    num_classes=num_classes,
    l2=l2,
    num_steps=num_steps,
    standardize=standardize,
  )
  test_x = check_features(test_x, "test_x")
  test_y = check_labels(test_y, test_x.shape[0], num_classes, "test_y")
  if test_x.shape[1] != head.weights.shape[0]:
    raise ValueError(
      f"test_x has D={test_x.shape[1]}, train_x has D={head.weights.shape[0]}."
    )
  probs = _softmax(head_logits(head, test_x).astype(np.float64))
  preds = np.argmax(probs, axis=-1).astype(np.int32)
  return ProbeResult(preds, probs, classification_metrics(test_y, probs), head)


@functools.partial(jax.jit, static_argnames=("num_classes", "k", "chunk_size"))
def _knn_votes(
  train_x: jax.Array,
  train_y: jax.Array,
  test_x: jax.Array,
  temperature: jax.Array,
  *,
  num_classes: int,
  k: int,
  chunk_size: int,
) -> jax.Array:
  normalise = lambda a: (
    a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  )
  train_z = normalise(train_x)

  def one(query: jax.Array) -> jax.Array:
    sims, idx = jax.lax.top_k(train_z @ query, k)
    weights = jnp.exp((sims - 1.0) / temperature)  # shift by max cosine 1
    votes = jax.nn.one_hot(train_y[idx], num_classes) * weights[:, None]
    votes = votes.sum(axis=0)
    return votes / jnp.sum(votes)

  return jax.lax.map(one, normalise(test_x), batch_size=chunk_size)


def knn_classify(
  train_x: ArrayLike,
  train_y: ArrayLike,
  test_x: ArrayLike,
  test_y: ArrayLike | None = None,
  *,
  num_classes: int,
  k: int = 20,
  temperature: float = 0.07,
  chunk_size: int = 256,
) -> KnnResult:
  """Weighted cosine kNN: the ``k`` most similar train rows vote.

  Each neighbour ``j`` of query ``q`` adds ``exp(cos(q, x_j) / temperature)``
  to its class; scores are the normalised votes.

  Args:
    train_x: ``[N, D]``.
    train_y: ``[N]`` labels.
    test_x: ``[M, D]``.
    test_y: optional ``[M]`` labels for metrics.
    num_classes: ``K``.
    k: neighbours (``1 <= k <= N``).
    temperature: vote temperature (> 0).
    chunk_size: test rows per batched similarity block (bounds memory).

  Returns:
    A :class:`KnnResult`.
  """
  train_x = check_features(train_x, "train_x")
  train_y = check_labels(train_y, train_x.shape[0], num_classes, "train_y")
  test_x = check_features(test_x, "test_x")
  if test_y is not None:
    test_y = check_labels(test_y, test_x.shape[0], num_classes, "test_y")
  if not 1 <= k <= train_x.shape[0]:
    raise ValueError(f"k must be in [1, N={train_x.shape[0]}], got {k}.")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}.")
  if test_x.shape[1] != train_x.shape[1]:
    raise ValueError(
      f"test_x D={test_x.shape[1]} != train_x D={train_x.shape[1]}."
    )
  inputs = jax.device_put((train_x, train_y, test_x, np.float32(temperature)))
  scores = _knn_votes(
    *inputs, num_classes=num_classes, k=k, chunk_size=chunk_size
  )
  scores = np.asarray(jax.device_get(scores))
  preds = np.argmax(scores, axis=-1).astype(np.int32)
  metrics = {} if test_y is None else classification_metrics(test_y, scores)
  return KnnResult(preds, scores, metrics)
