"""Embedding a whole data source with a method's ``embed``."""

from typing import Any

import jax
import ml_collections
import numpy as np

__all__ = ["embed_source"]


def _limit(source: Any, max_examples: int) -> np.ndarray:
  count = source.num_examples
  return np.arange(min(count, max_examples) if max_examples else count)


def embed_source(
  method: Any,
  variables: dict,
  source: Any,
  config: ml_collections.ConfigDict,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Embeds a source in fixed-size batches (the last one padded).

  Args:
    method: the method module.
    variables: the model variables.
    source: the data source.
    config: the experiment config (``eval.batch_size``, ``eval.max_examples``).

  Returns:
    ``(embeddings by key [N, E], labels [N])``.
  """
  indices = _limit(source, config.eval.max_examples)
  size = min(config.eval.batch_size, len(indices))
  embed = jax.jit(lambda v, b: method.embed(v, b, config))
  parts: list[dict[str, np.ndarray]] = []
  labels = []
  for start in range(0, len(indices), size):
    chunk = indices[start : start + size]
    padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk))])
    batch = source.get(padded)
    out = jax.device_get(embed(variables, batch))
    parts.append({k: np.asarray(v)[: len(chunk)] for k, v in out.items()})
    labels.append(np.asarray(batch["label"])[: len(chunk)])
  merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return merged, np.concatenate(labels)
