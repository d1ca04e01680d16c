"""Method diagnostics computed at evaluation, for ``msjax report``.

* Prototype utilisation (ProtoMM): for each prototype bank in the parameters
  (a 2-D leaf named ``prototypes``), how many test embeddings of each key pick
  each prototype (cosine argmax) -- a collapsed bank uses few prototypes.
* Feature geometry (ProMoBal's FC/RS, SPEC §3.7) of every embedding key.
"""

from typing import Any

import jax
import numpy as np

__all__ = ["compute", "fc_rs_numpy", "prototype_usage"]


def _normalise(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototype_usage(
  params: Any, embeddings: dict[str, np.ndarray]
) -> dict[str, list[int]]:
  """Counts per prototype of the cosine-argmax assignment of each embedding.

  Args:
    params: the model parameters.
    embeddings: ``{key: [N, E]}``.

  Returns:
    ``{key: counts [K]}`` for every key whose width matches a bank.
  """
  banks = [
    np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    if "prototypes" in jax.tree_util.keystr(path) and np.ndim(leaf) == 2
  ]
  usage = {}
  for bank in banks[:1]:
    for name, features in embeddings.items():
      if features.shape[-1] == bank.shape[-1]:
        picks = np.argmax(_normalise(features) @ _normalise(bank).T, axis=1)
        usage[name] = np.bincount(picks, minlength=len(bank)).tolist()
  return usage


def fc_rs_numpy(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Feature compactness and representation separability (SPEC §3.7)."""
  features = _normalise(np.asarray(features, np.float64))
  within = []
  means = []
  for label in np.unique(labels[labels >= 0]):
    members = features[labels == label]
    means.append(members.mean(axis=0))
    if len(members) >= 2:
      gram = np.clip(2.0 - 2.0 * members @ members.T, 0.0, None)
      dist = np.sqrt(gram)
      upper = np.triu_indices(len(members), k=1)
      within.append(dist[upper].mean())
  means = np.stack(means)
  between = np.linalg.norm(means[:, None] - means[None], axis=-1)
  off = ~np.eye(len(means), dtype=bool)
  return {
    "fc": float(np.mean(within)) if within else float("nan"),
    "rs": float(between[off].mean()) if off.any() else float("nan"),
  }


def compute(
  params: Any, embeddings: dict[str, np.ndarray], labels: np.ndarray
) -> dict[str, Any]:
  """Prototype usage and FC/RS per embedding key (test-split embeddings)."""
  return {
    "prototype_usage": prototype_usage(params, embeddings),
    "geometry": {
      name: fc_rs_numpy(features, labels)
      for name, features in embeddings.items()
    },
  }
