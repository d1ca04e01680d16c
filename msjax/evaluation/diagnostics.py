"""Method diagnostics computed at evaluation, for ``msjax report``.

* Prototype utilisation (ProtoMM): for each prototype bank in the parameters
  (a 2-D leaf named ``prototypes``), how many test embeddings of each key pick
  each prototype (cosine argmax) -- a collapsed bank uses few prototypes.
* Feature geometry (ProMoBal's FC/RS, SPEC §3.7) of every embedding key.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from msjax.kernels import fc_rs

__all__ = ["compute", "geometry", "prototype_usage"]


_fc_rs = jax.jit(fc_rs, static_argnames="num_classes")


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


def geometry(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Feature compactness and representation separability (SPEC §3.7).

  Evaluates :func:`msjax.kernels.fc_rs` on host arrays; rows labelled ``-1``
  (unlabelled) are ignored by the kernel.

  Args:
    features: ``[N, D]`` embeddings (l2-normalised inside the kernel).
    labels: ``[N]`` integer labels.

  Returns:
    ``{"fc": FC, "rs": RS}`` as Python floats (NaN where undefined).
  """
  labels = np.asarray(labels)
  labelled = labels[labels >= 0]
  num_classes = int(labelled.max()) + 1 if labelled.size else 1
  fc, rs, _ = _fc_rs(
    jnp.asarray(features, jnp.float32),
    jnp.asarray(labels, jnp.int32),
    num_classes=num_classes,
  )
  return {"fc": float(fc), "rs": float(rs)}


def compute(
  params: Any, embeddings: dict[str, np.ndarray], labels: np.ndarray
) -> dict[str, Any]:
  """Prototype usage and FC/RS per embedding key (test-split embeddings)."""
  return {
    "prototype_usage": prototype_usage(params, embeddings),
    "geometry": {
      name: geometry(features, labels) for name, features in embeddings.items()
    },
  }
