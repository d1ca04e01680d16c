"""An independent numpy implementation of SPEC.md (§1-§5), for test vectors.

Written from ``../shared/SPEC.md`` alone; it imports nothing from msjax. Every
function is generic in its dtype: float64 gives the expected values, float32
measures how much float32 rounding moves them (the tolerances), and complex
inputs give exact gradients by the complex step: ``F(x + i h e_k).imag / h``
is ``dF/dx_k`` to rounding for any ``F`` built from analytic operations. So the
functions use only operations that extend to complex numbers (``x * x`` rather
than ``abs``); comparisons, arg-maxima and the stop-gradient ``sg`` act on real
parts, and ``sg`` drops the imaginary part, which is exactly a zero derivative.
"""

import math

import numpy as np

__all__ = [
  "ca_loss",
  "complex_grad",
  "discriminator_bce",
  "entropic_ot",
  "fc_rs",
  "info_nce",
  "infomae_private_loss",
  "infomae_shared_loss",
  "mpp_loss",
  "nt_xent",
  "pro_fd",
  "pro_ucl",
  "samobal_infer",
  "samobal_select",
  "sinkhorn_knopp",
  "temporal_locality",
]


def sg(x):
  """Stop-gradient: the real part (no derivative information), same dtype."""
  x = np.asarray(x)
  return x.real.astype(x.dtype) if np.iscomplexobj(x) else x


def lse(x, axis):
  """log(sum(exp(x))) over ``axis`` (an int or tuple), kept dims."""
  m = np.max(x.real, axis=axis, keepdims=True)
  return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
  return x - lse(x, axis)


def softmax(x, axis=-1):
  return np.exp(log_softmax(x, axis))


def sqnorm(x, axis=-1):
  return np.sum(x * x, axis=axis)


def safe_norm(x, axis=-1):
  """Euclidean norm whose derivative at 0 is 0."""
  sq = sqnorm(x, axis)
  zero = sq.real == 0
  return np.where(zero, 0.0, np.sqrt(np.where(zero, 1.0, sq)))


def normalize(x):
  """n(x) = x / max(||x||, 1e-12) along the last axis."""
  norm = safe_norm(x)[..., None]
  return x / np.where(norm.real > 1e-12, norm, 1e-12)


def one_hot_argmax(x, axis):
  """one_hot(argmax over ``axis``) of the real part (ties: lowest index)."""
  idx = np.argmax(x.real, axis=axis)
  shape = [1] * x.ndim
  shape[axis] = x.shape[axis]
  ar = np.arange(x.shape[axis]).reshape(shape)
  return (np.expand_dims(idx, axis) == ar).astype(x.real.dtype)


def softplus(x):
  pos = x.real > 0
  return np.where(pos, x, 0.0) + np.log1p(np.exp(np.where(pos, -x, x)))


# SPEC §1 ---------------------------------------------------------------------


def sinkhorn_knopp(scores, *, epsilon=0.05, num_iters=3):
  """codes[..., B, K] = sg(Sinkhorn-Knopp equipartition) in the log domain."""
  scores = sg(scores)
  b, k = scores.shape[-2:]
  logits = scores / epsilon
  logits = logits - lse(logits, (-2, -1))
  for _ in range(num_iters):
    logits = logits - lse(logits, -2) - math.log(k)
    logits = logits - lse(logits, -1) - math.log(b)
  return np.exp(logits + math.log(b))


# SPEC §2 ---------------------------------------------------------------------


def mpp_loss(z, c, *, tau=0.1, alpha=0.5, epsilon=0.05, num_iters=3):
  """ProtoMM MPP. z[M,V,B,E], c[K,E] -> dict(loss, L_within, L_between, q,
  pair_ce[MV,MV]); a term with weight 0 or undefined is absent."""
  m_, v_ = z.shape[:2]
  s = z @ c.T  # [M, V, B, K]
  q = sinkhorn_knopp(s, epsilon=epsilon, num_iters=num_iters)
  logp = log_softmax(s / tau)
  qf = q.reshape(m_ * v_, *q.shape[2:])
  lf = logp.reshape(m_ * v_, *logp.shape[2:])
  # pair_ce[a, b] = mean_b(-sum_k q[a] logp[b])
  pair_ce = -np.mean(np.sum(qf[:, None] * lf[None, :], axis=-1), axis=-1)
  within, between = [], []
  for a in range(m_ * v_):
    for bb in range(m_ * v_):
      ma, va = divmod(a, v_)
      mb, vb = divmod(bb, v_)
      if ma == mb and va != vb:
        within.append(pair_ce[a, bb])
      if ma != mb:
        between.append(pair_ce[a, bb])
  out = {"q": q, "pair_ce": pair_ce}
  loss = 0.0
  if alpha != 0:
    if v_ == 1:
      raise ValueError("L_within undefined with V=1 unless alpha == 0")
    out["L_within"] = sum(within) / len(within)
    loss = loss + alpha * out["L_within"]
  if alpha != 1:
    if m_ == 1:
      raise ValueError("L_between undefined with M=1 unless alpha == 1")
    out["L_between"] = sum(between) / len(between)
    loss = loss + (1 - alpha) * out["L_between"]
  out["loss"] = loss
  return out


# SPEC §3 ---------------------------------------------------------------------


def pro_ucl(z, y, p, *, tau=0.07):
  """Pro-UCL. z[M,B,D], y[B], p[C,D] -> dict(loss, per_modality[M])."""
  m_, b_, _ = z.shape
  c_ = p.shape[0]
  yy = np.concatenate([y, np.arange(c_)])
  cnt = np.bincount(yy, minlength=c_)
  same = yy[None, :] == y[:, None]  # [B, N]
  not_self = np.ones((b_, b_ + c_), bool)
  not_self[np.arange(b_), np.arange(b_)] = False
  pos = same & not_self
  w = cnt[yy][None, :] - same.astype(np.int64)  # [B, N]
  per = []
  for m in range(m_):
    f = np.concatenate([z[m], p], axis=0)  # [N, D]
    sim = f[:b_] @ f.T / tau  # [B, N]
    # log den = lse_{n != i}(sim - log w)
    logw = np.log(np.where(not_self, w, 1).astype(z.real.dtype))
    masked = np.where(not_self, sim - logw, -np.inf)
    mx = np.max(masked.real, axis=1, keepdims=True)
    log_den = mx[:, 0] + np.log(
      np.sum(np.where(not_self, np.exp(masked - mx), 0.0), axis=1)
    )
    npos = pos.sum(1).astype(z.real.dtype)
    li = -np.sum(np.where(pos, sim, 0.0), axis=1) / npos + log_den
    per.append(np.mean(li))
  per = np.stack(per)
  return {"loss": np.mean(per), "per_modality": per}


def samobal_select(z, p, y, *, mode="straight_through", tau_g=1.0, noise=None):
  """SaMoBal train-time fusion. z[M,B,D], p[C,D], y[B], noise[B,M,D]."""
  s = np.transpose(z, (1, 0, 2)) * p[y][:, None, :]  # [B, M, D]
  if mode == "straight_through":
    soft = softmax((s + noise) / tau_g, axis=1)
    hard = one_hot_argmax(soft, axis=1)
    w = hard + (soft - sg(soft))
  elif mode == "soft":
    soft = softmax(s / tau_g, axis=1)
    hard = one_hot_argmax(s, axis=1)
    w = soft
  elif mode == "hard":
    soft = softmax(s / tau_g, axis=1)
    hard = one_hot_argmax(s, axis=1)
    w = hard.astype(soft.dtype)
  else:
    raise ValueError(mode)
  fused = np.sum(w * np.transpose(z, (1, 0, 2)), axis=1)
  return {
    "z_fus": normalize(fused),
    "hard": hard,
    "soft": soft,
    "w": w,
    "sel_rate": np.mean(hard, axis=(0, 2)),
  }


def samobal_infer(z, p, *, score="own"):
  """SaMoBal inference. z[M,B,D], p[C,D]."""
  zb = np.transpose(z, (1, 0, 2))  # [B, M, D]
  prod = zb[:, None, :, :] * p[None, :, None, :]  # [B, C, M, D]
  sel = one_hot_argmax(prod, axis=2)
  cand = normalize(np.sum(sel * zb[:, None, :, :], axis=2))  # [B, C, D]
  if score == "own":
    r = np.sum(cand * p[None], axis=-1)  # [B, C]
  elif score == "bank_max":
    all_scores = cand @ p.T  # [B, C, K]
    idx = np.argmax(all_scores.real, axis=-1)
    r = np.take_along_axis(all_scores, idx[..., None], axis=-1)[..., 0]
  else:
    raise ValueError(score)
  cls = np.argmax(r.real, axis=-1).astype(np.int32)
  z_fus = cand[np.arange(cand.shape[0]), cls]
  return {
    "z_fus": z_fus,
    "logits": z_fus @ p.T,
    "r": r,
    "cls": cls,
    "cand": cand,
  }


def entropic_ot(a, b, cost, *, epsilon=0.1, num_iters=20):
  """Entropic OT, log-domain Sinkhorn. a[..., C], b[..., C], cost[C, C]:
  one problem per leading index."""
  f = np.zeros_like(a)
  g = np.zeros_like(b)
  for _ in range(num_iters):
    f = (
      epsilon * np.log(a)
      - epsilon * lse((g[..., None, :] - cost) / epsilon, -1)[..., 0]
    )
    g = (
      epsilon * np.log(b)
      - epsilon * lse((f[..., :, None] - cost) / epsilon, -2)[..., 0, :]
    )
  t = np.exp((f[..., :, None] + g[..., None, :] - cost) / epsilon)
  return {"value": np.sum(t * cost, axis=(-2, -1)), "T": t, "f": f, "g": g}


def pro_fd(z_fus, y, p, *, tau_fd=1.0, epsilon=0.1, num_iters=20):
  """Pro-FD. z_fus[B,D], y[B], p[C,D]."""
  ps = sg(p)
  psi_ref = softmax(ps[y] @ ps.T / tau_fd)
  psi_fus = softmax(z_fus @ p.T / tau_fd)
  cost = 1 - ps @ ps.T
  per = entropic_ot(
    psi_ref, psi_fus, cost, epsilon=epsilon, num_iters=num_iters
  )["value"]
  return {
    "loss": np.mean(per),
    "per_sample": per,
    "psi_ref": psi_ref,
    "psi_fus": psi_fus,
    "cost": cost,
  }


def ca_loss(w, p):
  """Classifier alignment. w[M,C,D], p[C,D]."""
  pn = p / np.sqrt(np.sum(p * p))
  per = np.stack(
    [np.sum((wm / np.sqrt(np.sum(wm * wm)) - pn) ** 2) for wm in w]
  )
  return {"loss": np.mean(per), "per_modality": per}


def fc_rs(f, y, *, num_classes):
  """Geometry metrics FC, RS, class_fc[C] (nan below 2 samples)."""
  f = normalize(f)
  class_fc = np.full(num_classes, np.nan, dtype=f.dtype)
  mus = {}
  for c in range(num_classes):
    fc = f[y == c]
    if len(fc) >= 1:
      mus[c] = np.mean(fc, axis=0)
    if len(fc) >= 2:
      i, j = np.triu_indices(len(fc), k=1)
      class_fc[c] = np.mean(safe_norm(fc[i] - fc[j]))
  fc_val = np.nanmean(class_fc)
  dists = [safe_norm(mus[a] - mus[b]) for a in mus for b in mus if a != b]
  return {"FC": fc_val, "RS": np.mean(np.stack(dists)), "class_fc": class_fc}


# SPEC §4-§5 ------------------------------------------------------------------


def discriminator_bce(t_joint, t_product):
  return {"loss": np.mean(softplus(-t_joint)) + np.mean(softplus(t_product))}


def infomae_shared_loss(
  u1, u2, t_x1x2u, t_xiui, t_xjui, *, alpha=1.0, beta=0.5
):
  loss = alpha * np.mean(sqnorm(u1 - u2))
  for i in range(2):
    loss = loss + np.mean(t_x1x2u[i] + (1 - beta) * t_xiui[i] + t_xjui[i])
  return {"loss": loss}


def infomae_private_loss(t_xv, t_vu, *, gamma=0.1, eps=0.1):
  loss = 0.0
  for i in range(2):
    loss = loss + np.mean(gamma * t_xv[i] + eps * t_vu[i])
  return {"loss": loss}


def nt_xent(h1, h2, *, tau=0.1):
  """SimCLR NT-Xent over 2B normalised vectors, mean over the 2B anchors."""
  b = h1.shape[0]
  h = normalize(np.concatenate([h1, h2], axis=0))
  sim = h @ h.T / tau
  n = 2 * b
  off = ~np.eye(n, dtype=bool)
  partner = np.concatenate([np.arange(b, n), np.arange(b)])
  mx = np.max(np.where(off, sim.real, -np.inf), axis=1, keepdims=True)
  log_den = mx[:, 0] + np.log(np.sum(np.where(off, np.exp(sim - mx), 0), 1))
  losses = -(sim[np.arange(n), partner] - log_den)
  return {"loss": np.mean(losses)}


def temporal_locality(h, *, margin=1.0, eta=1.0):
  """h[S,L,E] -> dict(loss, cmat[S,S])."""
  s_ = h.shape[0]
  diff = h[:, None, :, None, :] - h[None, :, None, :, :]  # [S, S', L, L, E]
  cmat = np.mean(safe_norm(diff), axis=(2, 3))
  total = 0.0
  for s in range(s_):
    for t in range(s_):
      if s != t:
        arg = cmat[s, s] - cmat[s, t] + margin
        total = total + np.where(arg.real > 0, arg, 0.0)
  return {"loss": eta * total / (s_ * (s_ - 1)), "cmat": cmat}


def info_nce(a, b, *, tau=0.07):
  """Symmetric CLIP InfoNCE of l2-normalised a[B,E], b[B,E]."""
  logits = normalize(a) @ normalize(b).T / tau
  diag = np.arange(a.shape[0])
  ce1 = -np.mean(log_softmax(logits, 1)[diag, diag])
  ce2 = -np.mean(log_softmax(logits.T, 1)[diag, diag])
  return {"loss": 0.5 * (ce1 + ce2)}


# Gradients -------------------------------------------------------------------


def complex_grad(fun, inputs, names):
  """Gradients of scalar ``fun(**inputs)`` w.r.t. ``names``, by complex step.

  Float inputs are promoted to the complex dtype of their precision (float32
  -> complex64); each element in turn gets an imaginary perturbation ``h``
  and the derivative is the imaginary part of the result over ``h``.
  """

  def cplx(v):
    v = np.asarray(v)
    if v.dtype == np.float32:
      return v.astype(np.complex64)
    if v.dtype == np.float64:
      return v.astype(np.complex128)
    return v

  base = {k: cplx(v) for k, v in inputs.items()}
  grads = {}
  for name in names:
    x = base[name]
    h = 1e-20 if x.dtype == np.complex64 else 1e-100
    g = np.zeros(x.shape, x.real.dtype)
    flat = x.reshape(-1)
    for idx in range(flat.size):
      moved = flat.copy()
      moved[idx] += 1j * h
      value = fun(**{**base, name: moved.reshape(x.shape)})
      g.reshape(-1)[idx] = np.imag(value) / h
    grads[name] = g
  return grads
