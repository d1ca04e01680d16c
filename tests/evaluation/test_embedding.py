"""embed_source: a source embedded chunk by chunk through grain."""

import ml_collections
import numpy as np
import pytest

from msjax.evaluation.embedding import embed_source


class _Source:
  """An in-memory source that records the size of every read."""

  modalities = ("a",)

  def __init__(self, n: int) -> None:
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(n, 2, 3)).astype(np.float32)
    self.y = rng.integers(0, 4, size=n)
    self.num_examples = n
    self.reads: list[int] = []

  def get(self, indices: np.ndarray) -> dict:
    self.reads.append(len(indices))
    return {"signals": {"a": self.x[indices]}, "label": self.y[indices]}


def _config(batch_size: int, max_examples: int, prefetch: int):
  return ml_collections.ConfigDict(
    dict(
      eval=dict(batch_size=batch_size, max_examples=max_examples),
      data=dict(num_workers=0, prefetch=prefetch),
    )
  )


def _embed(variables: dict, batch: dict) -> dict:
  x = batch["signals"]["a"].reshape(len(batch["label"]), -1)
  return {"a": x * variables["w"], "fused": x.sum(-1, keepdims=True)}


@pytest.mark.parametrize(
  "batch_size,max_examples,prefetch", [(8, 0, 2), (7, 0, 0), (4, 10, 3)]
)
def test_chunks_match_one_pass_over_the_source(
  batch_size, max_examples, prefetch
):
  source = _Source(30)
  variables = {"w": np.float32(2.0)}
  config = _config(batch_size, max_examples, prefetch)
  out, labels = embed_source(_embed, variables, source, config)
  n = max_examples or 30
  flat = source.x[:n].reshape(n, -1)
  np.testing.assert_array_equal(out["a"], 2.0 * flat)
  np.testing.assert_allclose(out["fused"], flat.sum(-1, keepdims=True))
  np.testing.assert_array_equal(labels, source.y[:n])
  # Every read is one chunk (the last one padded), never the whole source.
  assert set(source.reads) == {batch_size}
  assert len(source.reads) == -(-n // batch_size)
