"""The fine-tune protocol: encoder and a linear head trained end to end.

For each selected embedding key a linear head ``[E, C]`` is trained with the
encoder's parameters unfrozen (Adam, ``eval.fine_tune_steps`` steps of
``eval.batch_size`` labelled training windows, drawn by ``(seed, step)``),
then the test split is scored with the tuned encoder.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from msjax.data import pipeline
from msjax.evaluation.classification_metrics import classification_metrics
from msjax.methods.interface import Method

__all__ = ["fine_tune_all", "fine_tune_one"]


def _labels(source: Any, chunk: int) -> np.ndarray:
  """``[N]`` labels, read ``chunk`` rows at a time (not the whole source)."""
  n = source.num_examples
  return np.concatenate(
    [
      np.asarray(source.get(np.arange(i, min(i + chunk, n)))["label"])
      for i in range(0, n, chunk)
    ]
  )


def _labelled(source: Any, limit: int, chunk: int) -> np.ndarray:
  rows = np.flatnonzero(_labels(source, chunk) >= 0)
  return rows[:limit] if limit else rows


def fine_tune_one(
  method: Method,
  variables: dict,
  config: ml_collections.ConfigDict,
  sources: tuple[Any, Any],
  name: str,
  key: jax.Array,
) -> dict[str, float]:
  """Fine-tunes on embedding ``name``; returns test accuracy/F1/mAP."""
  train_source, test_source = sources
  chunk = config.eval.batch_size
  rows = _labelled(train_source, config.eval.max_examples, chunk)
  size = min(config.eval.batch_size, len(rows))
  num_classes = train_source.num_classes
  example = train_source.get(rows[:size])
  width = method.embed(variables, example, config)[name].shape[-1]
  head = {
    "w": jax.random.normal(key, (width, num_classes)) / np.sqrt(width),
    "b": jnp.zeros((num_classes,)),
  }
  trainable = {"params": variables["params"], "head": head}
  optimizer = optax.adam(config.eval.fine_tune_learning_rate)

  def logits(params: dict, batch: dict) -> jax.Array:
    merged = {**variables, "params": params["params"]}
    features = method.embed(merged, batch, config)[name]
    return features @ params["head"]["w"] + params["head"]["b"]

  @jax.jit
  def update(params: dict, opt_state: Any, batch: dict) -> tuple:
    def loss(p: dict) -> jax.Array:
      return optax.softmax_cross_entropy_with_integer_labels(
        logits(p, batch), batch["label"]
      ).mean()

    grads = jax.grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(trainable)
  for step in range(config.eval.fine_tune_steps):
    picks = pipeline.global_batch_indices(
      len(rows), batch_size=size, seed=config.seed, step=step
    )
    trainable, opt_state = update(
      trainable, opt_state, train_source.get(rows[picks])
    )
  test_rows = _labelled(test_source, config.eval.max_examples, chunk)
  score = jax.jit(logits)
  scores = np.concatenate(
    [
      np.asarray(score(trainable, test_source.get(test_rows[i : i + size])))
      for i in range(0, len(test_rows), size)
    ]
  )
  labels = _labels(test_source, chunk)[test_rows]
  return {
    k: float(v) for k, v in classification_metrics(labels, scores).items()
  }


def fine_tune_all(
  method: Method,
  variables: dict,
  config: ml_collections.ConfigDict,
  sources: tuple[Any, Any],
  key: jax.Array,
) -> dict[str, dict[str, float]]:
  """Fine-tunes once per selected embedding key (default: all)."""
  example = sources[0].get(np.arange(min(2, sources[0].num_examples)))
  names = tuple(config.eval.embeddings) or tuple(
    method.embed(variables, example, config)
  )
  return {
    name: fine_tune_one(
      method, variables, config, sources, name, jax.random.fold_in(key, i)
    )
    for i, name in enumerate(names)
  }
