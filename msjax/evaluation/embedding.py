"""Embedding a whole data source with a method's ``embed``."""

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.methods.interface import Method

__all__ = ["embed_source", "make_embed_fn"]


def _limit(source: Any, max_examples: int) -> np.ndarray:
  count = source.num_examples
  return np.arange(min(count, max_examples) if max_examples else count)


def make_embed_fn(
  method: Method, config: ml_collections.ConfigDict
) -> Callable[[dict, dict], dict]:
  """``jit(embed)`` for one config, to reuse across sources and models."""
  return jax.jit(
    lambda variables, batch: method.embed(variables, batch, config)
  )


def embed_source(
  embed_fn: Callable[[dict, dict], dict],
  variables: dict,
  source: Any,
  config: ml_collections.ConfigDict,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Embeds a source in batches of ``eval.batch_size`` (the last one padded).

  Every batch has the same shape, so ``embed_fn`` compiles once.

  Args:
    embed_fn: from :func:`make_embed_fn`.
    variables: the model variables.
    source: the data source.
    config: the experiment config (``eval.batch_size``, ``eval.max_examples``).

  Returns:
    ``(embeddings by key [N, E], labels [N])``.
  """
  indices = _limit(source, config.eval.max_examples)
  size = config.eval.batch_size
  parts: list[dict[str, np.ndarray]] = []
  labels = []
  for start in range(0, len(indices), size):
    chunk = indices[start : start + size]
    padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk))])
    batch = source.get(padded)
    out = jax.device_get(embed_fn(variables, batch))
    parts.append({k: np.asarray(v)[: len(chunk)] for k, v in out.items()})
    labels.append(np.asarray(batch["label"])[: len(chunk)])
  merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return merged, np.concatenate(labels)
