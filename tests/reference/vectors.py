"""Test vectors made from the numpy reference (``spec_numpy``) at test time.

Why at test time rather than committed ``.npz`` files: the reference is the
source of truth, nothing binary can go stale beside it, and making every file
takes a few seconds (``python -m tests.reference.vectors`` prints the time and
writes the files to a directory for inspection). Inputs come from fixed seeds
(one per file, derived from its name), so the vectors are the same on every
run and machine up to float64 rounding, which the float64 tolerances
(``rtol=1e-8, atol=1e-10``) absorb.

The files have the layout of ``../shared/testvectors`` (see its README): keys
``x_<name>`` (float64, labels int32) and ``x_<name>_f32``, ``hp_<name>``,
``out_<name>``, ``r_<name>`` (the cotangent of ``out_<name>``; 1.0 for a
scalar loss, standard normal otherwise), ``grad_<name>`` (``dF/dx`` of
``F = sum_k sum(r_k * out_k)``, with the SPEC's stop-gradients, inputs used as
given) and ``gradtan_<name>`` (``grad`` projected on the tangent space of the
unit sphere, for unit-row inputs), so the kernel tests read either set.

float32 tolerances follow the shared set's rule: ``rtol`` 1e-4 for outputs and
1e-3 for gradients; ``atol`` 30 times the largest error of this reference run
in float32 on the ``x_*_f32`` inputs (gradients by the complex step in
complex64), rounded up to 1, 2 or 5 x 10^k and at least
``1e-6 * min(1, max|expected|)``; arg-max outputs must match exactly.
"""

import collections.abc
import dataclasses
import functools
import math
import time
import zlib

import numpy as np

from tests.reference import spec_numpy as ref

__all__ = ["NAMES", "load", "tolerances"]

INT_HPS = {"num_iters", "iters", "num_classes"}


@dataclasses.dataclass(frozen=True)
class Case:
  # inputs from a generator: float64 arrays, int32 labels
  make: collections.abc.Callable[[np.random.Generator], dict]
  hp: dict
  fun: collections.abc.Callable[..., dict]  # fun(**inputs, **hp) -> outputs
  cotangents: dict = dataclasses.field(default_factory=dict)  # key -> kind
  diff: tuple = ()
  unit: tuple = ()  # unit-row inputs: they get gradtan_
  exact: tuple = ()
  raises: bool = False


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _top2_gap(x, axis):
  s = np.sort(x, axis=axis)
  return float(np.min(np.take(s, -1, axis) - np.take(s, -2, axis)))


def _sinkhorn(shape, scale):
  return lambda rng: {"scores": scale * rng.standard_normal(shape)}


def _mpp(m, v, b, k, e):
  def make(rng):
    return {
      "z": _unit(rng.standard_normal((m, v, b, e))),
      "c": _unit(rng.standard_normal((k, e))),
    }

  return make


def _labels(rng, counts):
  y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
  return rng.permutation(y).astype(np.int32)


def _pro_ucl(rng):
  return {
    "z": _unit(rng.standard_normal((2, 24, 16))),
    "y": _labels(rng, [4, 7, 8, 5]),
    "P": _unit(rng.standard_normal((4, 16))),
  }


def _samobal_train(noise, tau_g):
  def make(rng):
    while True:  # keep the arg-max decisions clear of float32 rounding
      x = {
        "z": _unit(rng.standard_normal((2, 16, 32))),
        "P": _unit(rng.standard_normal((5, 32))),
        "y": rng.integers(0, 5, 16).astype(np.int32),
      }
      s = np.transpose(x["z"], (1, 0, 2)) * x["P"][x["y"]][:, None]
      if noise:
        u = rng.uniform(np.finfo(np.float64).tiny, 1.0, (16, 2, 32))
        x["gumbel"] = -np.log(-np.log(u))
        s = s + x["gumbel"]
      if _top2_gap(s / tau_g, 1) > 1e-4:
        return x

  return make


def _samobal_infer(score):
  def make(rng):
    while True:
      x = {
        "z": _unit(rng.standard_normal((2, 16, 32))),
        "P": _unit(rng.standard_normal((6, 32))),
      }
      zb = np.transpose(x["z"], (1, 0, 2))
      prod = zb[:, None] * x["P"][None, :, None]
      out = ref.samobal_infer(x["z"], x["P"], score=score)
      gaps = [_top2_gap(prod, 2), _top2_gap(out["r"], 1)]
      if score == "bank_max":
        gaps.append(_top2_gap(out["cand"] @ x["P"].T, 2))
      if min(gaps) > 1e-5:
        return x

  return make


def _hist(rng, shape):
  return ref.softmax(rng.standard_normal(shape))


def _ot(rng):
  p = _unit(rng.standard_normal((6, 8)))
  return {
    "a": _hist(rng, (8, 6)),
    "b": _hist(rng, (8, 6)),
    "cost": 1 - p @ p.T,
  }


def _ot_batch(a, b, cost, *, eps, iters):
  return ref.entropic_ot(a, b, cost, epsilon=eps, num_iters=iters)


def _pro_fd(b, c, d):
  def make(rng):
    return {
      "z_fus": _unit(rng.standard_normal((b, d))),
      "y": rng.integers(0, c, b).astype(np.int32),
      "P": _unit(rng.standard_normal((c, d))),
    }

  return make


def _fc_rs(rng):
  y = _labels(rng, [7, 5, 3, 6, 9])
  centres = rng.standard_normal((5, 16))
  return {"f": _unit(centres[y] + 0.8 * rng.standard_normal((30, 16))), "y": y}


def _temporal(rng):
  while True:
    base = rng.standard_normal((4, 1, 16))
    h = 0.25 * base + 0.2 * rng.standard_normal((4, 4, 16))
    cmat = ref.temporal_locality(h)["cmat"]
    args = np.diag(cmat)[:, None] - cmat + 1.0
    off = ~np.eye(4, dtype=bool)
    active = np.sum(args[off] > 0)
    if 3 <= active <= 9 and np.min(np.abs(args[off])) > 1e-2:
      return {"h": h}


def _pair(rng, b, e, noise):
  a = rng.standard_normal((b, e))
  return a, a + noise * rng.standard_normal((b, e))


def _ntxent(rng):
  h1, h2 = _pair(rng, 16, 24, 0.7)
  return {"h1": h1, "h2": h2}


def _info_nce(rng):
  a, b = _pair(rng, 16, 24, 0.7)
  return {"a": a, "b": b}


def _shared(rng):
  return {
    "U1": rng.standard_normal((16, 12)),
    "U2": rng.standard_normal((16, 12)),
    "t_x1x2u": rng.standard_normal((2, 16)),
    "t_xiui": rng.standard_normal((2, 16)),
    "t_xjui": rng.standard_normal((2, 16)),
  }


def _logits(*names):
  return lambda rng: {n: 2 * rng.standard_normal((2, 16)) for n in names}


def _disc(rng):
  return {
    "t_joint": 1 + 2 * rng.standard_normal(16),
    "t_product": -1 + 2 * rng.standard_normal(16),
  }


def _mpp_fun(z, c, **hp):
  return ref.mpp_loss(z, c, **hp)


def _sk_fun(scores, **hp):
  return {"codes": ref.sinkhorn_knopp(scores, **hp)}


def _select(mode):
  def fun(z, P, y, gumbel=None, *, tau_g):
    return ref.samobal_select(z, P, y, mode=mode, tau_g=tau_g, noise=gumbel)

  return fun


def _infer(score):
  return lambda z, P: ref.samobal_infer(z, P, score=score)


def _pro_fd_fun(z_fus, y, P, *, tau_fd, eps, iters):
  return ref.pro_fd(z_fus, y, P, tau_fd=tau_fd, epsilon=eps, num_iters=iters)


MPP_HP = {"tau": 0.1, "epsilon": 0.05, "num_iters": 3}
ONE = "one"
NORMAL = "normal"

CASES: dict[str, Case] = {
  "sinkhorn_basic": Case(
    _sinkhorn((32, 16), 0.25), {"epsilon": 0.05, "num_iters": 3}, _sk_fun
  ),
  "sinkhorn_rect": Case(
    _sinkhorn((8, 64), 0.25), {"epsilon": 0.05, "num_iters": 3}, _sk_fun
  ),
  "sinkhorn_params": Case(
    _sinkhorn((24, 20), 0.5), {"epsilon": 0.1, "num_iters": 5}, _sk_fun
  ),
  "sinkhorn_batched": Case(
    _sinkhorn((2, 3, 16, 24), 0.25), {"epsilon": 0.05, "num_iters": 3}, _sk_fun
  ),
  "mpp_basic": Case(
    _mpp(2, 2, 16, 24, 32),
    {**MPP_HP, "alpha": 0.5},
    _mpp_fun,
    {"loss": ONE},
    ("z", "c"),
    ("z", "c"),
  ),
  "mpp_swav_alpha1": Case(
    _mpp(1, 3, 16, 20, 16),
    {**MPP_HP, "alpha": 1.0},
    _mpp_fun,
    {"loss": ONE},
    ("z", "c"),
    ("z", "c"),
  ),
  "mpp_v1_alpha0": Case(
    _mpp(2, 1, 16, 16, 16),
    {**MPP_HP, "alpha": 0.0},
    _mpp_fun,
    {"loss": ONE},
    ("z", "c"),
    ("z", "c"),
  ),
  "mpp_v1_raises": Case(
    _mpp(2, 1, 8, 16, 16), {**MPP_HP, "alpha": 0.5}, _mpp_fun, raises=True
  ),
  "pro_ucl_basic": Case(
    _pro_ucl,
    {"tau": 0.1},
    lambda z, y, P, tau: ref.pro_ucl(z, y, P, tau=tau),
    {"loss": ONE},
    ("z", "P"),
    ("z", "P"),
  ),
  "samobal_train_st": Case(
    _samobal_train(True, 1.0),
    {"tau_g": 1.0},
    _select("straight_through"),
    {"z_fus": NORMAL},
    ("z", "P"),
    ("z", "P"),
    ("hard",),
  ),
  "samobal_train_soft": Case(
    _samobal_train(False, 0.5),
    {"tau_g": 0.5},
    _select("soft"),
    {"z_fus": NORMAL},
    ("z", "P"),
    ("z", "P"),
    ("hard",),
  ),
  "samobal_train_hard": Case(
    _samobal_train(False, 1.0),
    {"tau_g": 1.0},
    _select("hard"),
    {"z_fus": NORMAL},
    ("z", "P"),
    ("z", "P"),
    ("hard",),
  ),
  "samobal_infer_own": Case(
    _samobal_infer("own"),
    {},
    _infer("own"),
    {"logits": NORMAL},
    ("z", "P"),
    ("z", "P"),
    ("cls",),
  ),
  "samobal_infer_bank_max": Case(
    _samobal_infer("bank_max"),
    {},
    _infer("bank_max"),
    {"logits": NORMAL},
    ("z", "P"),
    ("z", "P"),
    ("cls",),
  ),
  "ot_eps_basic": Case(
    _ot, {"eps": 0.1, "iters": 20}, _ot_batch, {"value": NORMAL}, ("a", "b")
  ),
  "pro_fd_basic": Case(
    _pro_fd(16, 6, 32),
    {"tau_fd": 1.0, "eps": 0.1, "iters": 20},
    _pro_fd_fun,
    {"loss": ONE},
    ("z_fus", "P"),
    ("z_fus", "P"),
  ),
  "pro_fd_tau03": Case(
    _pro_fd(16, 5, 16),
    {"tau_fd": 0.3, "eps": 0.1, "iters": 20},
    _pro_fd_fun,
    {"loss": ONE},
    ("z_fus", "P"),
    ("z_fus", "P"),
  ),
  "ca_basic": Case(
    lambda rng: {
      "W": rng.standard_normal((2, 5, 16)),
      "P": rng.standard_normal((5, 16)),
    },
    {},
    lambda W, P: ref.ca_loss(W, P),
    {"loss": ONE},
    ("W", "P"),
  ),
  "fc_rs_basic": Case(
    _fc_rs,
    {"num_classes": 5},
    lambda f, y, num_classes: ref.fc_rs(f, y, num_classes=num_classes),
  ),
  "infomae_disc_bce": Case(
    _disc, {}, ref.discriminator_bce, {"loss": ONE}, ("t_joint", "t_product")
  ),
  "infomae_shared": Case(
    _shared,
    {"alpha": 0.5, "beta": 0.3},
    lambda U1, U2, t_x1x2u, t_xiui, t_xjui, **hp: ref.infomae_shared_loss(
      U1, U2, t_x1x2u, t_xiui, t_xjui, **hp
    ),
    {"loss": ONE},
    ("U1", "U2", "t_x1x2u", "t_xiui", "t_xjui"),
  ),
  "infomae_private": Case(
    _logits("t_xv", "t_vu"),
    {"gamma": 0.4, "eps": 0.2},
    ref.infomae_private_loss,
    {"loss": ONE},
    ("t_xv", "t_vu"),
  ),
  "ntxent_basic": Case(
    _ntxent, {"tau": 0.1}, ref.nt_xent, {"loss": ONE}, ("h1", "h2")
  ),
  "temporal_basic": Case(
    _temporal,
    {"margin": 1.0, "eta": 1.0},
    ref.temporal_locality,
    {"loss": ONE},
    ("h",),
  ),
  "info_nce_basic": Case(
    _info_nce, {"tau": 0.1}, ref.info_nce, {"loss": ONE}, ("a", "b")
  ),
}
NAMES = tuple(sorted(CASES))


def _f32(x: dict) -> dict:
  return {
    k: v.astype(np.float32) if v.dtype == np.float64 else v
    for k, v in x.items()
  }


def _tangent(grad, x):
  return grad - np.sum(grad * x, axis=-1, keepdims=True) * x


def _round_up(v: float) -> float:
  if v <= 0:
    return 0.0
  k = math.floor(math.log10(v))
  for m in (1, 2, 5, 10):
    if m * 10.0**k >= v * (1 - 1e-12):
      return float(f"{m * 10.0**k:.0e}")
  raise AssertionError


def _tolerance(expected, observed, rtol):
  expected = np.asarray(expected, np.float64)
  finite = np.isfinite(expected)
  err = np.max(np.abs(observed - expected)[finite], initial=0.0)
  peak = np.max(np.abs(expected[finite]), initial=0.0)
  atol = max(_round_up(30 * err), 1e-6 * min(1.0, peak), 1e-12)
  return {"rtol": rtol, "atol": float(f"{atol:.0e}")}


def _evaluate(case, x, cot):
  hp = case.hp
  outs = case.fun(**x, **hp)

  def objective(**xs):
    o = case.fun(**xs, **hp)
    return sum(np.sum(r * o[k]) for k, r in cot.items())

  grads = ref.complex_grad(objective, x, case.diff) if case.diff else {}
  return outs, grads


@functools.cache
def _build(name: str) -> tuple[dict, dict]:
  case = CASES[name]
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  x = case.make(rng)
  data = {}
  for k, v in x.items():
    data["x_" + k] = v
    if v.dtype == np.float64:
      data[f"x_{k}_f32"] = v.astype(np.float32)
  for k, v in case.hp.items():
    data["hp_" + k] = np.asarray(v, np.int64 if k in INT_HPS else np.float64)
  if case.raises:
    data["expect_error"] = np.asarray(1, np.int32)
    return data, {}
  outs = case.fun(**x, **case.hp)
  cot = {}
  for k, kind in case.cotangents.items():
    shape = np.shape(outs[k])
    cot[k] = np.ones(shape) if kind == ONE else rng.standard_normal(shape)
  outs, grads = _evaluate(case, x, cot)
  x32 = _f32(x)
  outs32, grads32 = _evaluate(case, x32, _f32(cot))
  tols = {}
  for k, v in outs.items():
    v = np.asarray(v)
    data["out_" + k] = v.astype(np.int32 if k == "cls" else np.float64)
    if k in case.exact:
      tols["out_" + k] = "exact"
    else:
      tols["out_" + k] = _tolerance(v, np.asarray(outs32[k], np.float64), 1e-4)
  for k, r in cot.items():
    data["r_" + k] = np.asarray(r, np.float64)
  for k, g in grads.items():
    data["grad_" + k] = g
    tols["grad_" + k] = _tolerance(g, grads32[k], 1e-3)
    if k in case.unit:
      data["gradtan_" + k] = _tangent(g, x[k])
      tols["gradtan_" + k] = _tolerance(
        data["gradtan_" + k], _tangent(grads32[k], x32[k]), 1e-3
      )
  return data, tols


def load(name: str) -> dict[str, np.ndarray]:
  """The vector file ``name`` as a dict of fresh numpy arrays."""
  return {k: v.copy() for k, v in _build(name)[0].items()}


class _Tolerances(collections.abc.Mapping):
  """``{file: {key: tolerance}}``, each file built when first looked up."""

  def __getitem__(self, name: str) -> dict:
    if name not in CASES:
      raise KeyError(name)
    return dict(_build(name)[1])

  def __iter__(self):
    return iter(NAMES)

  def __len__(self) -> int:
    return len(NAMES)


def tolerances() -> collections.abc.Mapping:
  """``{file: {key: {"rtol", "atol"} | "exact"}}``, built lazily per file."""
  return _Tolerances()


def main(out_dir: str | None = None) -> None:
  import json
  import pathlib

  total = time.perf_counter()
  tols = {}
  for name in NAMES:
    start = time.perf_counter()
    data, tols[name] = _build(name)
    print(f"{name:24s} {time.perf_counter() - start:6.2f} s")
    if out_dir:
      pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
      np.savez(pathlib.Path(out_dir) / f"{name}.npz", **data)
  if out_dir:
    (pathlib.Path(out_dir) / "tolerances.json").write_text(
      json.dumps({k: v for k, v in tols.items() if v}, indent=1, sort_keys=True)
    )
  print(f"total {time.perf_counter() - total:.2f} s")


if __name__ == "__main__":
  import sys

  main(sys.argv[1] if len(sys.argv) > 1 else None)
