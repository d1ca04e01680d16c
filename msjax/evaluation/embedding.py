"""Embedding a whole data source with a method's ``embed``.

The source is read through grain like the training input
(:mod:`msjax.data.loader`): chunk ``c`` of ``eval.batch_size`` examples is
element ``c`` of a ``MapDataset``, read ahead by ``data.num_workers`` worker
processes (or ``data.prefetch`` threads) while the previous chunk is
embedded, so no more than a few chunks are in host memory at once.
"""

import math
from collections.abc import Callable
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from msjax.data.loader import iterate
from msjax.methods.interface import Method

__all__ = ["ReadChunk", "embed_columns", "embed_source", "make_embed_fn"]


def _limit(source: Any, max_examples: int) -> np.ndarray:
  count = source.num_examples
  return np.arange(min(count, max_examples) if max_examples else count)


class ReadChunk:
  """Chunk ``c`` -> the host batch of its examples (a grain map function).

  Every chunk has ``size`` rows: the last one repeats its first example to
  fill up (the caller drops the padding).
  """

  def __init__(self, source: Any, indices: np.ndarray, size: int) -> None:
    """Reads ``indices`` of ``source`` in chunks of ``size``."""
    self.source = source
    self.indices = indices
    self.size = size

  def __call__(self, chunk: Any) -> dict:
    """The padded host batch of chunk ``chunk``."""
    start = int(chunk) * self.size
    rows = self.indices[start : start + self.size]
    fill = np.repeat(rows[:1], self.size - len(rows))
    return self.source.get(np.concatenate([rows, fill]))


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
  """Embeds a source: :func:`embed_columns` keeping the labels only."""
  out, columns = embed_columns(embed_fn, variables, source, config)
  return out, columns["label"]


def embed_columns(
  embed_fn: Callable[[dict, dict], dict],
  variables: dict,
  source: Any,
  config: ml_collections.ConfigDict,
  columns: tuple[str, ...] = ("label",),
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """Embeds a source in batches of ``eval.batch_size`` (the last one padded).

  Every batch has the same shape, so ``embed_fn`` compiles once. The
  batches are read through grain (module docstring).

  Args:
    embed_fn: from :func:`make_embed_fn`.
    variables: the model variables.
    source: the data source.
    config: the experiment config (``eval.batch_size``, ``eval.max_examples``,
      ``data.num_workers``, ``data.prefetch``).

    columns: per-example columns of the source's batches to return with
      the embeddings (those the source does not have are left out).

  Returns:
    ``(embeddings by key [N, E], {column: [N]})``.
  """
  indices = _limit(source, config.eval.max_examples)
  size = config.eval.batch_size
  num_chunks = math.ceil(len(indices) / size)
  dataset = grain.MapDataset.range(num_chunks).map(
    ReadChunk(source, indices, size)
  )
  batches = iterate(
    dataset,
    num_workers=int(config.data.num_workers),
    prefetch=int(config.data.prefetch),
  )
  parts: list[dict[str, np.ndarray]] = []
  kept: list[dict[str, np.ndarray]] = []
  for chunk, batch in enumerate(batches):
    rows = min(size, len(indices) - chunk * size)
    out = jax.device_get(embed_fn(variables, batch))
    parts.append({k: np.asarray(v)[:rows] for k, v in out.items()})
    kept.append({c: np.asarray(batch[c])[:rows] for c in columns if c in batch})
  merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return merged, {c: np.concatenate([p[c] for p in kept]) for c in kept[0]}
