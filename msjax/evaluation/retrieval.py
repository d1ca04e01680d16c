"""Cross-modal retrieval: does modality A's embedding find modality B's?

For a method that aligns its modalities in one space (its ``align`` hook:
CLIP/CMC and SLIP projections, ProtoMM's prototype-space embeddings,
InfoMAE's shared projections), every test window of modality ``a`` queries
the test windows of modality ``b`` by cosine similarity. Three levels:

* **instance** — the query's own synchronized partner (row ``i`` of ``b``
  for row ``i`` of ``a``): recall at 1 and 5 (``instance_r1``,
  ``instance_r5``; chance ``1/N`` and ``5/N``);
* **recording** — the top hit comes from the same recording (``session``
  column): ``recording_p1`` (chance ``sum_g p_g^2`` over the recordings'
  shares ``p_g``);
* **class** — the top hit has the query's label: ``class_p1`` (chance
  ``sum_c p_c^2``) and the mean average precision over the whole ranking,
  ``class_map``.

Every metric is the mean of both directions (``a -> b`` and ``b -> a``).
The partner's rank counts gallery items scored strictly higher, so ties
count in the query's favour. Memory is ``[chunk, N]`` per block of queries.
"""

import itertools
from collections.abc import Mapping

import numpy as np

__all__ = ["chance_levels", "cross_modal_retrieval", "retrieval_table"]

_CHUNK = 1024


def _normalise(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _average_precision(relevant: np.ndarray) -> np.ndarray:
  """``[Q]`` AP of each row of ``relevant [Q, N]`` (ranked order, bool)."""
  hits = np.cumsum(relevant, axis=1)
  ranks = np.arange(1, relevant.shape[1] + 1)
  precision_at_hits = np.where(relevant, hits / ranks, 0.0)
  count = relevant.sum(axis=1)
  return np.where(count > 0, precision_at_hits.sum(1) / np.maximum(count, 1), 0)


def _one_direction(
  query: np.ndarray,
  gallery: np.ndarray,
  labels: np.ndarray,
  groups: np.ndarray | None,
) -> dict[str, float]:
  n = query.shape[0]
  sums = dict.fromkeys(
    ("instance_r1", "instance_r5", "class_p1", "class_map"), 0.0
  )
  if groups is not None:
    sums["recording_p1"] = 0.0
  for start in range(0, n, _CHUNK):
    rows = np.arange(start, min(start + _CHUNK, n))
    sims = query[rows] @ gallery.T
    own = sims[np.arange(len(rows)), rows]
    rank = np.sum(sims > own[:, None], axis=1)
    sums["instance_r1"] += float(np.sum(rank < 1))
    sums["instance_r5"] += float(np.sum(rank < 5))
    top = np.argmax(sims, axis=1)
    sums["class_p1"] += float(np.sum(labels[top] == labels[rows]))
    order = np.argsort(-sims, axis=1, kind="stable")
    relevant = labels[order] == labels[rows][:, None]
    sums["class_map"] += float(np.sum(_average_precision(relevant)))
    if groups is not None:
      sums["recording_p1"] += float(np.sum(groups[top] == groups[rows]))
  return {k: v / n for k, v in sums.items()}


def cross_modal_retrieval(
  a: np.ndarray,
  b: np.ndarray,
  labels: np.ndarray,
  groups: np.ndarray | None = None,
) -> dict[str, float]:
  """Retrieval between two aligned modalities (module docstring).

  Args:
    a: ``[N, E]`` embeddings of modality ``a``.
    b: ``[N, E]`` embeddings of modality ``b``; row ``i`` is the same
      window as row ``i`` of ``a``.
    labels: ``[N]`` class labels.
    groups: ``[N]`` recording (session) ids, or ``None`` (no
      ``recording_p1``).

  Returns:
    ``{"instance_r1", "instance_r5", "class_p1", "class_map"[,
    "recording_p1"]}``, each the mean of both directions.

  Raises:
    ValueError: shapes that do not match.
  """
  a, b = np.asarray(a), np.asarray(b)
  labels = np.asarray(labels)
  if a.ndim != 2 or a.shape != b.shape or labels.shape != (a.shape[0],):
    raise ValueError(
      "retrieval needs a [N, E] and b [N, E] of one shape and labels [N],"
      f" got {a.shape}, {b.shape} and {labels.shape}."
    )
  if groups is not None:
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
      raise ValueError(f"groups must be [N], got {groups.shape}.")
  a, b = _normalise(a), _normalise(b)
  forward = _one_direction(a, b, labels, groups)
  backward = _one_direction(b, a, labels, groups)
  return {k: (forward[k] + backward[k]) / 2 for k in forward}


def chance_levels(
  labels: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, float]:
  """The metrics of :func:`cross_modal_retrieval` for unrelated embeddings.

  Expected values under a uniformly random ranking (``class_map`` by the
  share of relevant items, its large-``N`` value).
  """
  labels = np.asarray(labels)
  n = labels.shape[0]
  shares = np.unique(labels, return_counts=True)[1] / n
  out = {
    "instance_r1": 1.0 / n,
    "instance_r5": min(5.0 / n, 1.0),
    "class_p1": float(np.sum(shares**2)),
    "class_map": float(np.sum(shares**2)),
  }
  if groups is not None:
    g = np.unique(np.asarray(groups), return_counts=True)[1] / n
    out["recording_p1"] = float(np.sum(g**2))
  return out


def retrieval_table(
  aligned: Mapping[str, np.ndarray],
  labels: np.ndarray,
  groups: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
  """:func:`cross_modal_retrieval` for every pair of aligned modalities.

  Args:
    aligned: ``{m: [N, E]}`` from a method's ``align`` hook.
    labels: ``[N]``.
    groups: ``[N]`` recording ids or ``None``.

  Returns:
    ``{"a|b": metrics}`` per unordered pair in ``aligned``'s order, and
    ``"chance"``: :func:`chance_levels`.
  """
  table = {
    f"{a}|{b}": cross_modal_retrieval(aligned[a], aligned[b], labels, groups)
    for a, b in itertools.combinations(aligned, 2)
  }
  table["chance"] = chance_levels(labels, groups)
  return table
