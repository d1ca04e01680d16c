"""Softmax-regression head: objective and a deterministic L-BFGS trainer.

``N`` examples, ``D`` features, ``K`` classes. Used by the linear probe
(:mod:`msjax.evaluation.probes`) and reusable elsewhere (e.g. fitting a head
before fine-tuning). The objective is mean cross-entropy plus
``l2 / 2 * ||W||^2`` (bias not regularised) on standardised features,
minimised full-batch by ``optax.lbfgs`` (backtracking line search) for a fixed
number of iterations in one ``lax.scan`` under ``jit``, from a zero
initialisation: no randomness.

Rows, features and classes are padded to power-of-two buckets (floors 256,
128, 8) so that problems of different sizes share compilations: padding rows
have weight 0, padding features are 0 (their weights feel only the L2 term and
stay 0) and padding classes are masked out of the softmax, so the optimum is
that of the unpadded problem.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import ArrayLike

__all__ = [
  "LinearHead",
  "check_features",
  "check_labels",
  "fit_softmax_regression",
  "head_logits",
  "softmax_regression_loss",
]

_MIN_SCALE = 1e-6
_MASKED_LOGIT = -1e9
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


def check_features(x: ArrayLike, name: str) -> np.ndarray:
  """``[N, D]`` finite features as float32; ``ValueError`` naming ``name``."""
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{name} must be [N, D] with N, D > 0, got {x.shape}.")
  if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
    raise ValueError(f"{name} must be finite numbers (no NaN/inf).")
  return x.astype(np.float32)


def check_labels(
  y: ArrayLike, rows: int, num_classes: int, name: str
) -> np.ndarray:
  """``[rows]`` labels in ``0..num_classes-1`` as int32, else ``ValueError``."""
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
  z = (check_features(x, "x") - head.mean) / head.scale
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
  x = check_features(x, "train_x")
  y = check_labels(y, x.shape[0], num_classes, "train_y")
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
  # Explicit transfers: safe under jax_transfer_guard("disallow").
  inputs = jax.device_put(
    (
      z,
      np.pad(y, (0, rows - n)),
      weight,
      np.arange(classes) < num_classes,
      np.float32(l2),
    )
  )
  params = jax.device_get(_fit(*inputs, num_steps=num_steps))
  weights = params["weights"][:d, :num_classes]
  bias = params["bias"][:num_classes]
  return LinearHead(weights, bias, mean, scale)
