"""Cross-modal retrieval metrics against a loop-by-loop reference."""

import numpy as np
import pytest

from msjax.evaluation import retrieval


def _reference(a, b, labels, groups):
  """Per query, by definition: cosine similarities, ranks, precisions."""

  def direction(q, g):
    out = {"instance_r1": [], "instance_r5": [], "class_p1": []}
    out.update(class_map=[], recording_p1=[])
    for i in range(len(q)):
      sims = [
        float(np.dot(q[i], g[j]) / np.linalg.norm(q[i]) / np.linalg.norm(g[j]))
        for j in range(len(g))
      ]
      rank = sum(s > sims[i] for s in sims)
      out["instance_r1"].append(rank < 1)
      out["instance_r5"].append(rank < 5)
      top = int(np.argmax(sims))
      out["class_p1"].append(labels[top] == labels[i])
      out["recording_p1"].append(groups[top] == groups[i])
      order = sorted(range(len(g)), key=lambda j: -sims[j])
      hits, precisions = 0, []
      for position, j in enumerate(order, start=1):
        if labels[j] == labels[i]:
          hits += 1
          precisions.append(hits / position)
      out["class_map"].append(np.mean(precisions))
    return {k: float(np.mean(v)) for k, v in out.items()}

  forward, backward = direction(a, b), direction(b, a)
  return {k: (forward[k] + backward[k]) / 2 for k in forward}


@pytest.mark.parametrize("chunk", [4, 1024])
def test_matches_reference(monkeypatch, chunk):
  monkeypatch.setattr(retrieval, "_CHUNK", chunk)
  rng = np.random.default_rng(0)
  n = 23
  shared = rng.normal(size=(n, 5))
  a = shared + 0.8 * rng.normal(size=(n, 5))
  b = shared + 0.8 * rng.normal(size=(n, 5))
  labels = rng.integers(0, 3, n)
  groups = rng.integers(0, 5, n)
  got = retrieval.cross_modal_retrieval(a, b, labels, groups)
  want = _reference(a, b, labels, groups)
  assert got.keys() == want.keys()
  for key in want:
    assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_identical_embeddings_retrieve_their_partner():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(40, 8))
  labels = np.arange(40) % 4
  got = retrieval.cross_modal_retrieval(a, 3.0 * a, labels, labels)
  assert got["instance_r1"] == 1.0 and got["class_p1"] == 1.0
  assert got["recording_p1"] == 1.0


def test_unrelated_embeddings_sit_at_chance():
  rng = np.random.default_rng(2)
  n = 1500
  labels = rng.integers(0, 3, n)
  groups = rng.integers(0, 30, n)
  got = retrieval.cross_modal_retrieval(
    rng.normal(size=(n, 16)), rng.normal(size=(n, 16)), labels, groups
  )
  chance = retrieval.chance_levels(labels, groups)
  assert got.keys() == chance.keys()
  assert got["instance_r1"] < 5 * chance["instance_r1"]
  for key in ("class_p1", "class_map", "recording_p1"):
    assert abs(got[key] - chance[key]) < 0.03, (key, got[key], chance[key])


def test_table_has_every_pair_and_chance():
  rng = np.random.default_rng(3)
  aligned = {m: rng.normal(size=(10, 4)) for m in ("ppg", "acc", "gyro")}
  table = retrieval.retrieval_table(aligned, np.arange(10) % 2)
  assert list(table) == ["ppg|acc", "ppg|gyro", "acc|gyro", "chance"]
  assert "recording_p1" not in table["ppg|acc"]


def test_mismatched_shapes_are_one_line():
  with pytest.raises(ValueError, match="one shape"):
    retrieval.cross_modal_retrieval(np.zeros((4, 2)), np.zeros((3, 2)), [0] * 4)
  with pytest.raises(ValueError, match="groups"):
    retrieval.cross_modal_retrieval(
      np.ones((4, 2)), np.ones((4, 2)), [0] * 4, [0] * 3
    )
