"""Float64 numpy references of the baseline objectives (tests only).

Written from the formulas in the method modules' docstrings with explicit
loops, independently of the code under test (no msjax import).
"""

import itertools

import numpy as np

__all__ = [
  "cocoa",
  "focal",
  "info_nce",
  "masked_mse",
  "moco_ctr",
  "normalize",
  "nt_xent",
]


def normalize(x: np.ndarray) -> np.ndarray:
  """Rows (last axis) scaled to unit l2 norm."""
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _neg_log_softmax(row: np.ndarray, target: int) -> float:
  top = np.max(row)
  return float(np.log(np.sum(np.exp(row - top))) + top - row[target])


def nt_xent(a: np.ndarray, b: np.ndarray, tau: float) -> float:
  """SimCLR NT-Xent of two ``[B, E]`` views, mean over the 2B anchors."""
  u = normalize(np.concatenate([a, b]))
  n = len(a)
  total = 0.0
  for i in range(2 * n):
    others = [j for j in range(2 * n) if j != i]
    logits = np.array([u[i] @ u[j] / tau for j in others])
    total += _neg_log_softmax(logits, others.index((i + n) % (2 * n)))
  return total / (2 * n)


def info_nce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
  """Symmetric CLIP InfoNCE of ``[B, E]`` pairs."""
  a, b = normalize(a), normalize(b)
  total = 0.0
  for i in range(len(a)):
    total += _neg_log_softmax(np.array([a[i] @ y / tau for y in b]), i)
    total += _neg_log_softmax(np.array([b[i] @ y / tau for y in a]), i)
  return total / (2 * len(a))


def moco_ctr(q: np.ndarray, k: np.ndarray, tau: float) -> float:
  """MoCo v3: ``2 tau`` x cross-entropy of ``q_i`` against all keys."""
  q, k = normalize(q), normalize(k)
  losses = [
    _neg_log_softmax(np.array([q[i] @ kj / tau for kj in k]), i)
    for i in range(len(q))
  ]
  return 2 * tau * float(np.mean(losses))


def cocoa(z: np.ndarray, tau: float, neg_weight: float) -> float:
  """COCOA ``L_pos + lambda L_neg`` of ``z [M, B, E]``."""
  z = normalize(z)
  num_mod, num = z.shape[:2]
  pos = []
  for i in range(num):
    for m, n in itertools.permutations(range(num_mod), 2):
      pos.append(np.exp((1 - z[m, i] @ z[n, i]) / tau))
  neg = 0.0
  for m in range(num_mod):
    terms = [
      np.exp(z[m, i] @ z[m, j] / tau)
      for i in range(num)
      for j in range(num)
      if i != j
    ]
    neg += np.mean(terms)
  return float(np.mean(pos) + neg_weight * neg)


def _orth(x: np.ndarray, y: np.ndarray) -> float:
  cos = np.sum(normalize(x) * normalize(y), axis=-1)
  return float(np.mean(np.maximum(cos, 0.0)))


def _rank(e: np.ndarray, seq_len: int, margin: float) -> float:
  num_seq = len(e) // seq_len
  rows = [range(s * seq_len, (s + 1) * seq_len) for s in range(num_seq)]
  dist = np.zeros((num_seq, num_seq))
  for s, t in itertools.product(range(num_seq), repeat=2):
    pairs = [
      np.linalg.norm(e[i] - e[j]) for i in rows[s] for j in rows[t] if i != j
    ]
    dist[s, t] = np.mean(pairs)
  hinges = [
    max(0.0, dist[s, s] - dist[s, t] + margin)
    for s, t in itertools.permutations(range(num_seq), 2)
  ]
  return float(np.mean(hinges))


def focal(
  e: np.ndarray,
  seq_len: int,
  tau: float,
  margin: float,
  weights: tuple[float, float, float, float],
) -> tuple[float, list[float]]:
  """FOCAL's loss and its four terms for ``e [2, M, B, 2D]``."""
  num_mod, num = e.shape[1], e.shape[2]
  half = e.shape[-1] // 2
  sh, pr = e[..., :half], e[..., half:]

  def contrast(x: np.ndarray, y: np.ndarray) -> float:
    per_position = [
      nt_xent(x[p::seq_len], y[p::seq_len], tau) for p in range(seq_len)
    ]
    return float(np.mean(per_position))

  pairs = list(itertools.combinations(range(num_mod), 2))
  shared = sum(contrast(sh[v, a], sh[v, b]) for v in range(2) for a, b in pairs)
  private = sum(contrast(pr[0, m], pr[1, m]) for m in range(num_mod))
  orth = sum(
    _orth(sh[v, m], pr[v, m]) for v in range(2) for m in range(num_mod)
  )
  orth += sum(_orth(pr[v, a], pr[v, b]) for v in range(2) for a, b in pairs)
  temporal = 0.0
  if seq_len > 1:
    temporal = sum(
      _rank(e[v, m], seq_len, margin) for v in range(2) for m in range(num_mod)
    )
  del num
  terms = [shared, private, orth, temporal]
  return float(np.dot(weights, terms)), terms


def masked_mse(
  target: np.ndarray, pred: np.ndarray, mask: np.ndarray, norm_pix: bool
) -> float:
  """MAE loss: per-row mean over masked patches, then mean over rows."""
  target = np.asarray(target, np.float64)
  if norm_pix:
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, ddof=1, keepdims=True)
    target = (target - mean) / np.sqrt(var + 1e-6)
  rows = []
  for b in range(len(target)):
    errs = [
      np.mean((pred[b, n] - target[b, n]) ** 2)
      for n in range(target.shape[1])
      if mask[b, n]
    ]
    rows.append(np.mean(errs) if errs else 0.0)
  return float(np.mean(rows))
