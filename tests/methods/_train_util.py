"""A tiny optax training loop and probe helpers for the method tests only.

The real loop is :mod:`msjax.train`; this one is the smallest loop that follows
the method interface (``loss_fn`` / ``post_update`` / ``embed``), so method
tests do not depend on the trainer. InfoMAE's tests may import it too.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from msjax.data import synthetic
from msjax.evaluation.probes import linear_probe
from msjax.methods import Method

__all__ = [
  "TrainResult",
  "data_config",
  "embed_source",
  "experiment_config",
  "fixed_batch",
  "make_step",
  "init",
  "jitted",
  "probe_accuracies",
  "sources",
  "train",
]


class TrainResult(NamedTuple):
  """Output of :func:`train`.

  Attributes:
    variables: final ``{"params", ...model state}``.
    losses: ``[steps]`` training losses.
    metrics: last step's metrics (Python floats).
    snapshots: ``{s: variables after s updates}`` for the requested ``s``.
  """

  variables: dict[str, Any]
  losses: np.ndarray
  metrics: dict[str, float]
  snapshots: dict[int, dict[str, Any]]


def data_config(task: str = "shared") -> ml_collections.ConfigDict:
  """A small synthetic set: 32 sessions x 16 windows of 4 s (384 / 128).

  The pulse carries the shared factor (exertion) with dominance 2, so a
  heart-rate shift is easy to see; random encoders read it poorly.
  """
  c = synthetic.default_config(smoke=True)
  c.window_s = 4.0
  c.dominance = {"ppg": 2.0, "acc": 1.0}
  c.num_sessions = 32
  c.windows_per_session = 16
  c.persistence = 0.7
  c.task = task
  return c


def experiment_config(
  method: Method, size: str = "tiny", task: str = "shared", seed: int = 0
) -> ml_collections.ConfigDict:
  """``seed``, ``data``, ``model``, ``loss`` for a method."""
  config = method.default_config(size)
  config.seed = seed
  config.data = data_config(task)
  if "num_classes" in config.model:
    config.model.num_classes = synthetic.TASKS[task]
  return config


def sources(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
  """``(train, test)`` synthetic sources of ``config.data``."""
  return (
    synthetic.SyntheticSource(config.data, "train"),
    synthetic.SyntheticSource(config.data, "test"),
  )


def fixed_batch(source: Any, batch_size: int, seed: int = 0) -> dict:
  """A deterministic host batch of ``batch_size`` distinct rows."""
  rng = np.random.default_rng(seed)
  return source.get(rng.choice(source.num_examples, batch_size, replace=False))


def make_step(
  method: Method, config: ml_collections.ConfigDict, optimizer: Any
) -> Any:
  """A jitted ``(params, state, opt_state, batch, step) -> ...`` update."""
  base_key = jax.random.key(config.seed)

  @jax.jit
  def step_fn(
    params: Any,
    model_state: Mapping[str, Any],
    opt_state: Any,
    batch: dict,
    step: jax.Array,
  ) -> tuple[Any, dict[str, Any], Any, jax.Array, dict[str, jax.Array]]:
    key = jax.random.fold_in(base_key, step)

    def objective(p: Any) -> tuple[jax.Array, tuple[dict, dict]]:
      return method.loss_fn(
        {"params": p, **model_state}, batch, key, config, step
      )

    (loss, (new_state, metrics)), grads = jax.value_and_grad(
      objective, has_aux=True
    )(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    params = method.post_update(params, config, step)
    return params, {**model_state, **new_state}, opt_state, loss, metrics

  return step_fn


def init(method: Method, config: Any, example_batch: dict) -> dict[str, Any]:
  """``method.init`` under ``jit`` (one compile, no eager op dispatch)."""
  fn = jax.jit(lambda key, batch: method.init(key, config, batch))
  return fn(jax.random.key(config.seed), example_batch)


def train(
  method: Method,
  config: ml_collections.ConfigDict,
  source: Any,
  *,
  steps: int,
  batch_size: int = 32,
  learning_rate: float = 1e-2,
  variables: dict[str, Any] | None = None,
  snapshot_steps: tuple[int, ...] = (),
) -> TrainResult:
  """Trains with Adam on random batches (numpy stream seeded by config.seed).

  Args:
    method: a :class:`msjax.methods.Method`.
    config: the experiment config.
    source: the training source.
    steps: number of updates.
    batch_size: rows per batch (without replacement inside a batch).
    learning_rate: Adam learning rate.
    variables: start here instead of ``method.init``.
    snapshot_steps: keep the variables after these numbers of updates.

  Returns:
    A :class:`TrainResult`.
  """
  rng = np.random.default_rng(config.seed)
  if variables is None:
    variables = init(method, config, fixed_batch(source, batch_size))
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(params)
  step_fn = make_step(method, config, optimizer)
  losses = []
  metrics: dict[str, jax.Array] = {}
  snapshots = {}
  for step in range(steps):
    if step in snapshot_steps:
      snapshots[step] = {"params": params, **model_state}
    idx = rng.choice(source.num_examples, batch_size, replace=False)
    params, model_state, opt_state, loss, metrics = step_fn(
      params, model_state, opt_state, source.get(idx), jnp.int32(step)
    )
    losses.append(loss)
  final = {"params": params, **model_state}
  host = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if steps in snapshot_steps:
    snapshots[steps] = final
  losses = np.asarray(jax.device_get(losses))
  return TrainResult(final, losses, host, snapshots)


def jitted(method: Method, config: Any, name: str) -> Any:
  """``method.<name>`` with ``config`` bound, jitted once per (method, config).

  ``name`` is ``"embed"`` (``fn(variables, batch)``) or ``"loss_fn"``
  (``fn(variables, batch, rng, step)``).
  """
  cache_key = (id(method), id(config), name)
  if cache_key not in _JITTED:
    fn = getattr(method, name)
    if name == "embed":
      _JITTED[cache_key] = jax.jit(lambda v, b: fn(v, b, config))
    else:
      _JITTED[cache_key] = jax.jit(lambda v, b, r, s: fn(v, b, r, config, s))
  return _JITTED[cache_key]


_JITTED: dict[tuple[int, int, str], Any] = {}


def embed_source(
  method: Method,
  variables_list: list[dict[str, Any]],
  config: Any,
  source: Any,
  chunk: int = 128,
) -> list[dict[str, np.ndarray]]:
  """``method.embed`` of every row of ``source``, for several variables.

  One jitted function with a fixed chunk size (the last chunk padded), so
  all variables and sources of the same shapes share one compilation.
  """
  fn = jitted(method, config, "embed")
  n = source.num_examples
  out = []
  for variables in variables_list:
    parts = []
    for start in range(0, n, chunk):
      idx = np.arange(start, start + chunk) % n
      emb = jax.device_get(fn(variables, source.get(idx)))
      parts.append({k: v[: min(chunk, n - start)] for k, v in emb.items()})
    out.append({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
  return out


def probe_accuracies(
  method: Method,
  variables_list: list[dict[str, Any]],
  config: ml_collections.ConfigDict,
  train_source: Any,
  test_source: Any,
  key: str = "fused",
) -> list[float]:
  """Linear-probe test accuracy of ``embed(...)[key]`` for each variables."""
  train_x = embed_source(method, variables_list, config, train_source)
  test_x = embed_source(method, variables_list, config, test_source)
  accuracies = []
  for tr, te in zip(train_x, test_x, strict=True):
    result = linear_probe(
      tr[key],
      train_source.labels(),
      te[key],
      test_source.labels(),
      num_classes=train_source.num_classes,
    )
    accuracies.append(float(result.metrics["accuracy"]))
  return accuracies
