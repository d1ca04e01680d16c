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
jitted. Row and feature counts are padded to power-of-two buckets so that
probes of different sizes share compilations.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import ArrayLike

from msjax.train.classification_metrics import classification_metrics

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

_MIN_SCALE = 1e-6
_MASKED_LOGIT = -1e9
# Padding floors (rows, features, classes): probes up to these sizes share one
# compilation.
_ROWS_FLOOR, _COLS_FLOOR, _CLASSES_FLOOR = 256, 128, 8


class LinearHead(NamedTuple):
  """A fitted softmax-regression head (numpy float32).

  Attributes:
    weights: ``[D, K]``.
    bias: ``[K]``.
    mean: ``[D]`` feature mean subtracted before the head.
    scale: ``[D]`` feature scale divided before the head.
  """

  weights: np.ndarray
  bias: np.ndarray
  mean: np.ndarray
  scale: np.ndarray


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


def _check_x(x: ArrayLike, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{name} must be [N, D] with N, D > 0, got {x.shape}.")
  if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
    raise ValueError(f"{name} must be finite numbers (no NaN/inf).")
  return x.astype(np.float32)


def _check_y(
  y: ArrayLike, rows: int, num_classes: int, name: str
) -> np.ndarray:
  y = np.asarray(y)
  if y.shape != (rows,) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(
      f"{name} must be integer [{rows}], got {y.dtype} {y.shape}."
    )
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(
      f"{name} must be in [0, {num_classes}) (filter out unlabelled -1 rows "
      f"first), got range [{y.min()}, {y.max()}]."
    )
  return y.astype(np.int32)


def _bucket(n: int, floor: int) -> int:
  """Smallest power of two >= max(n, floor)."""
  return max(floor, 1 << max(n - 1, 0).bit_length())


def head_logits(head: LinearHead, x: ArrayLike) -> np.ndarray:
  """``float32 [M, K]`` logits of ``[M, D]`` features."""
  z = (_check_x(x, "x") - head.mean) / head.scale
  return (z @ head.weights + head.bias).astype(np.float32)


def softmax_regression_loss(
  params: dict[str, jax.Array],
  z: jax.Array,
  y: jax.Array,
  *,
  l2: float | jax.Array,
  weight: jax.Array | None = None,
  class_mask: jax.Array | None = None,
) -> jax.Array:
  """Mean cross-entropy plus ``0.5 * l2 * ||weights||^2`` (bias free).

  Args:
    params: ``{"weights": [D, K], "bias": [K]}``.
    z: ``[N, D]`` (standardised) features.
    y: ``int32 [N]`` labels.
    l2: weight-decay strength.
    weight: optional ``[N]`` example weights (0 for padding rows); the
      cross-entropy is their weighted mean.
    class_mask: optional ``bool [K]``; classes marked False (padding) get a
      logit of -1e9, i.e. no probability mass.

  Returns:
    Scalar loss.
  """
  logits = z @ params["weights"] + params["bias"]
  if class_mask is not None:
    logits = jnp.where(class_mask, logits, _MASKED_LOGIT)
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  if weight is None:
    mean_xent = jnp.mean(xent)
  else:
    mean_xent = jnp.sum(weight * xent) / jnp.maximum(jnp.sum(weight), 1.0)
  return mean_xent + 0.5 * l2 * jnp.sum(params["weights"] ** 2)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _fit(
  z: jax.Array,
  y: jax.Array,
  weight: jax.Array,
  class_mask: jax.Array,
  l2: jax.Array,
  *,
  num_steps: int,
) -> dict[str, jax.Array]:
  params = {
    "weights": jnp.zeros((z.shape[1], class_mask.shape[0]), jnp.float32),
    "bias": jnp.zeros(class_mask.shape, jnp.float32),
  }
  objective = functools.partial(
    softmax_regression_loss,
    z=z,
    y=y,
    l2=l2,
    weight=weight,
    class_mask=class_mask,
  )
  solver = optax.lbfgs(
    linesearch=optax.scale_by_backtracking_linesearch(
      max_backtracking_steps=20, store_grad=True
    )
  )
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(
      grad, state, params, value=value, grad=grad, value_fn=objective
    )
    return (optax.apply_updates(params, updates), state), None

  init = (params, solver.init(params))
  (params, _), _ = jax.lax.scan(step, init, None, length=num_steps)
  return params


def fit_softmax_regression(
  x: ArrayLike,
  y: ArrayLike,
  *,
  num_classes: int,
  l2: float = 1e-3,
  num_steps: int = 100,
  standardize: bool = True,
) -> LinearHead:
  """Fits multinomial logistic regression full-batch with L-BFGS.

  Args:
    x: ``[N, D]`` features.
    y: ``[N]`` integer labels in ``0..K-1``.
    num_classes: ``K`` (>= 2).
    l2: weight-decay strength on standardised features.
    num_steps: L-BFGS iterations (fixed; the loop is a ``lax.scan``).
    standardize: subtract the train mean and divide by the train standard
      deviation (floored at 1e-6) before the head.

  Returns:
    The fitted :class:`LinearHead`.
  """
  if num_classes < 2 or num_steps < 1 or l2 < 0:
    raise ValueError(
      f"need num_classes >= 2, num_steps >= 1, l2 >= 0; got {num_classes}, "
      f"{num_steps}, {l2}."
    )
  x = _check_x(x, "train_x")
  y = _check_y(y, x.shape[0], num_classes, "train_y")
  n, d = x.shape
  if standardize:
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0).astype(np.float32)
    scale = np.maximum(x64.std(axis=0), _MIN_SCALE).astype(np.float32)
  else:
    mean, scale = np.zeros(d, np.float32), np.ones(d, np.float32)
  # Padding rows get weight 0, padding feature columns are zero (their
  # weights feel only the L2 term and stay 0), padding classes are masked;
  # the optimum is that of the unpadded problem.
  rows, cols = _bucket(n, _ROWS_FLOOR), _bucket(d, _COLS_FLOOR)
  classes = _bucket(num_classes, _CLASSES_FLOOR)
  z = np.zeros((rows, cols), np.float32)
  z[:n, :d] = (x - mean) / scale
  weight = np.zeros(rows, np.float32)
  weight[:n] = 1.0
  params = _fit(
    z,
    np.pad(y, (0, rows - n)),
    weight,
    np.arange(classes) < num_classes,
    np.float32(l2),
    num_steps=num_steps,
  )
  weights = np.asarray(params["weights"])[:d, :num_classes]
  bias = np.asarray(params["bias"])[:num_classes]
  return LinearHead(weights, bias, mean, scale)


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
  test_x = _check_x(test_x, "test_x")
  test_y = _check_y(test_y, test_x.shape[0], num_classes, "test_y")
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
  train_x = _check_x(train_x, "train_x")
  train_y = _check_y(train_y, train_x.shape[0], num_classes, "train_y")
  test_x = _check_x(test_x, "test_x")
  if test_y is not None:
    test_y = _check_y(test_y, test_x.shape[0], num_classes, "test_y")
  if not 1 <= k <= train_x.shape[0]:
    raise ValueError(f"k must be in [1, N={train_x.shape[0]}], got {k}.")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}.")
  if test_x.shape[1] != train_x.shape[1]:
    raise ValueError(
      f"test_x D={test_x.shape[1]} != train_x D={train_x.shape[1]}."
    )
  scores = _knn_votes(
    train_x,
    train_y,
    test_x,
    np.float32(temperature),
    num_classes=num_classes,
    k=k,
    chunk_size=chunk_size,
  )
  scores = np.asarray(scores)
  preds = np.argmax(scores, axis=-1).astype(np.int32)
  metrics = {} if test_y is None else classification_metrics(test_y, scores)
  return KnnResult(preds, scores, metrics)
