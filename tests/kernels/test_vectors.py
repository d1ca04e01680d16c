"""Every test vector file against the public ``msjax.kernels`` API.

The files come from msjax's own float64 reference (``tests/reference``); when
the SPEC's published set is present (``../shared/testvectors`` or
``$MSJAX_SHARED/testvectors``) every file of it is checked the same way, and the
reference itself must reproduce it (outputs and gradients) on its inputs.

For each vector file the kernel is called through the SPEC §6 signature under
``jit``; every ``out_*`` key is compared with its per-key float32 tolerance
(``tolerances.json``), and the gradient of ``F = sum_k sum(r_k * out_k)`` with
respect to every input that has a ``grad_*`` key is compared too. A kernel that
uses its "(normalised)" inputs as given must match ``grad_*``; one that
re-normalises them internally must return a gradient tangent to the unit sphere
that matches ``gradtan_*`` (testvectors README). The same checks run in float64
on the ``x_*`` inputs with ``rtol=1e-8, atol=1e-10``.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax import kernels
from tests.conftest import (
  TESTVECTORS,
  load_shared_tolerances,
  load_shared_vectors,
  load_tolerances,
  load_vectors,
  shared_vectors_present,
)
from tests.reference import spec_numpy, vectors

SOURCES = {
  "own": (load_vectors, load_tolerances),
  "shared": (load_shared_vectors, load_shared_tolerances),
}
needs_shared = pytest.mark.skipif(
  not shared_vectors_present(),
  reason="cross-check only: ../shared/testvectors (MSJAX_SHARED) not present",
)

F64_TOL = {"rtol": 1e-8, "atol": 1e-10}
INT_HPS = {"num_iters", "iters", "num_classes"}


def _hp(data: dict) -> dict:
  out = {}
  for k, v in data.items():
    if k.startswith("hp_"):
      name = k[3:]
      out[name] = int(v) if name in INT_HPS else float(v)
  return out


def _fields(result) -> dict:
  return {k: v for k, v in result._asdict().items() if v is not None}


def _sinkhorn(x, hp):
  codes = kernels.sinkhorn_knopp(
    x["scores"], epsilon=hp["epsilon"], num_iters=hp["num_iters"]
  )
  return {"codes": codes}


def _mpp(x, hp):
  loss, aux = kernels.mpp_loss(
    x["z"],
    x["c"],
    tau=hp["tau"],
    alpha=hp["alpha"],
    epsilon=hp["epsilon"],
    num_iters=hp["num_iters"],
  )
  return {"loss": loss, **_fields(aux)}


def _pro_ucl(x, hp):
  loss, per_modality = kernels.pro_ucl(x["z"], x["y"], x["P"], tau=hp["tau"])
  return {"loss": loss, "per_modality": per_modality}


def _samobal_train(mode):
  def fn(x, hp):
    out = kernels.samobal_select(
      x["z"],
      x["P"],
      x["y"],
      mode=mode,
      tau_g=hp["tau_g"],
      noise=x.get("gumbel"),
    )
    return _fields(out)

  return fn


def _samobal_infer(score):
  def fn(x, hp):
    del hp
    return _fields(kernels.samobal_infer(x["z"], x["P"], score=score))

  return fn


def _ot(x, hp):
  solve = functools.partial(
    kernels.entropic_ot, epsilon=hp["eps"], num_iters=hp["iters"]
  )
  out = jax.vmap(solve, in_axes=(0, 0, None))(x["a"], x["b"], x["cost"])
  return _fields(out)


def _pro_fd(x, hp):
  loss, aux = kernels.pro_fd(
    x["z_fus"],
    x["y"],
    x["P"],
    tau_fd=hp["tau_fd"],
    epsilon=hp["eps"],
    num_iters=hp["iters"],
  )
  return {"loss": loss, **_fields(aux)}


def _ca(x, hp):
  del hp
  loss, per_modality = kernels.ca_loss(x["W"], x["P"])
  return {"loss": loss, "per_modality": per_modality}


def _fc_rs(x, hp):
  fc, rs, class_fc = kernels.fc_rs(
    x["f"], x["y"], num_classes=hp["num_classes"]
  )
  return {"FC": fc, "RS": rs, "class_fc": class_fc}


def _disc_bce(x, hp):
  del hp
  return {"loss": kernels.discriminator_bce(x["t_joint"], x["t_product"])}


def _shared(x, hp):
  loss = kernels.infomae_shared_loss(
    x["U1"],
    x["U2"],
    x["t_x1x2u"],
    x["t_xiui"],
    x["t_xjui"],
    alpha=hp["alpha"],
    beta=hp["beta"],
  )
  return {"loss": loss}


def _private(x, hp):
  loss = kernels.infomae_private_loss(
    x["t_xv"], x["t_vu"], gamma=hp["gamma"], eps=hp["eps"]
  )
  return {"loss": loss}


def _nt_xent(x, hp):
  return {"loss": kernels.nt_xent(x["h1"], x["h2"], tau=hp["tau"])}


def _temporal(x, hp):
  loss, cmat = kernels.temporal_locality(
    x["h"], margin=hp["margin"], eta=hp["eta"]
  )
  return {"loss": loss, "cmat": cmat}


def _info_nce(x, hp):
  return {"loss": kernels.info_nce(x["a"], x["b"], tau=hp["tau"])}


CASES: dict[str, Callable] = {
  "sinkhorn_basic": _sinkhorn,
  "sinkhorn_rect": _sinkhorn,
  "sinkhorn_params": _sinkhorn,
  "sinkhorn_batched": _sinkhorn,
  "mpp_basic": _mpp,
  "mpp_swav_alpha1": _mpp,
  "mpp_v1_alpha0": _mpp,
  "pro_ucl_basic": _pro_ucl,
  "samobal_train_st": _samobal_train("straight_through"),
  "samobal_train_soft": _samobal_train("soft"),
  "samobal_train_hard": _samobal_train("hard"),
  "samobal_infer_own": _samobal_infer("own"),
  "samobal_infer_bank_max": _samobal_infer("bank_max"),
  "ot_eps_basic": _ot,
  "pro_fd_basic": _pro_fd,
  "pro_fd_tau03": _pro_fd,
  "ca_basic": _ca,
  "fc_rs_basic": _fc_rs,
  "infomae_disc_bce": _disc_bce,
  "infomae_shared": _shared,
  "infomae_private": _private,
  "ntxent_basic": _nt_xent,
  "temporal_basic": _temporal,
  "info_nce_basic": _info_nce,
}
# Inputs that are never differentiated (labels, explicit noise).
NON_DIFF = {"y", "gumbel"}


def test_every_vector_file_is_covered():
  covered = set(CASES) | {"mpp_v1_raises"}
  assert set(vectors.NAMES) == covered


@needs_shared
def test_every_shared_vector_file_is_covered():
  files = {p.stem for p in TESTVECTORS.glob("*.npz")}
  covered = set(CASES) | {"mpp_v1_raises"}
  assert files == covered, (
    f"uncovered: {files - covered}, stale: {covered - files}"
  )


def _inputs(data: dict, use_f64: bool) -> dict:
  x = {}
  for k, v in data.items():
    if not k.startswith("x_") or k.endswith("_f32"):
      continue
    name = k[2:]
    if v.dtype.kind == "f":
      x[name] = jnp.asarray(v if use_f64 else data[k + "_f32"])
    else:
      x[name] = jnp.asarray(v)
  return x


def _check_outputs(name, outs, data, tols, use_f64):
  expected_keys = {k[4:] for k in data if k.startswith("out_")}
  missing = expected_keys - set(outs)
  assert not missing, f"{name}: kernel returned no {sorted(missing)}"
  for key in sorted(expected_keys):
    actual = np.asarray(outs[key])
    expected = data["out_" + key]
    tol = tols["out_" + key]
    if tol == "exact":
      np.testing.assert_array_equal(
        actual.astype(expected.dtype), expected, err_msg=f"{name}:{key}"
      )
      continue
    if key == "pair_ce":  # the diagonal is unused (testvectors README)
      off = ~np.eye(expected.shape[0], dtype=bool)
      actual, expected = actual[off], expected[off]
    if not use_f64:
      assert actual.dtype == np.float32, f"{name}:{key} dtype {actual.dtype}"
    np.testing.assert_allclose(
      actual, expected, err_msg=f"{name}:{key}", **(F64_TOL if use_f64 else tol)
    )


def _check_gradients(name, fn, x, hp, data, tols, use_f64):
  r_keys = [k[2:] for k in data if k.startswith("r_")]
  diff = sorted(k[5:] for k in data if k.startswith("grad_"))
  if not diff:
    return

  def objective(diff_x):
    outs = fn({**x, **diff_x}, hp)
    return sum(jnp.sum(jnp.asarray(data["r_" + k]) * outs[k]) for k in r_keys)

  grads = jax.jit(jax.grad(objective))({k: x[k] for k in diff})
  for k in diff:
    g = np.asarray(grads[k])
    tol = F64_TOL if use_f64 else tols["grad_" + k]
    try:
      np.testing.assert_allclose(g, data["grad_" + k], **tol)
      continue
    except AssertionError:
      if "gradtan_" + k not in data:
        raise
    # A re-normalising kernel: its gradient is tangent to the unit sphere.
    tol = F64_TOL if use_f64 else tols["gradtan_" + k]
    radial = np.sum(g * np.asarray(x[k]), axis=-1)
    np.testing.assert_allclose(
      radial,
      0.0,
      atol=tol["atol"] * 10,
      err_msg=f"{name}: grad_{k} neither"
      " matches grad_ nor is tangent to the sphere",
    )
    np.testing.assert_allclose(
      g, data["gradtan_" + k], err_msg=f"{name}:gradtan_{k}", **tol
    )


def _run_case(name: str, use_f64: bool, source: str = "own"):
  load, load_tols = SOURCES[source]
  data = load(name)
  tols = load_tols()[name]
  hp = _hp(data)
  fn = CASES[name]
  x = _inputs(data, use_f64)
  outs = jax.jit(lambda x: fn(x, hp))(x)
  _check_outputs(name, outs, data, tols, use_f64)
  _check_gradients(name, fn, x, hp, data, tols, use_f64)


@pytest.mark.parametrize("name", sorted(CASES))
def test_vectors_float32(name):
  _run_case(name, use_f64=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_vectors_float64(name, x64):
  _run_case(name, use_f64=True)


@needs_shared
@pytest.mark.parametrize("name", sorted(CASES))
def test_shared_vectors_float32(name):
  _run_case(name, use_f64=False, source="shared")


@needs_shared
@pytest.mark.parametrize("name", sorted(CASES))
def test_shared_vectors_float64(name, x64):
  _run_case(name, use_f64=True, source="shared")


@needs_shared
@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_reproduces_shared_vectors(name):
  """msjax's numpy reference, on the published inputs, gives the published
  outputs and gradients: the two independent references agree."""
  data = load_shared_vectors(name)
  case = vectors.CASES[name]
  x = {
    k[2:]: v
    for k, v in data.items()
    if k.startswith("x_") and not k.endswith("_f32")
  }
  hp = {
    k[3:]: int(v) if k[3:] in vectors.INT_HPS else float(v)
    for k, v in data.items()
    if k.startswith("hp_")
  }
  outs = case.fun(**x, **hp)
  assert {f"out_{k}" for k in outs} == {k for k in data if k[:4] == "out_"}
  for k, value in outs.items():
    expected, value = data["out_" + k], np.asarray(value, np.float64)
    if k == "pair_ce":  # the diagonal is unused
      off = ~np.eye(len(expected), dtype=bool)
      expected, value = expected[off], value[off]
    np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-12)
  cot = {k[2:]: v for k, v in data.items() if k.startswith("r_")}
  diff = sorted(k[5:] for k in data if k.startswith("grad_"))
  assert diff == sorted(case.diff)
  if not diff:
    return

  def objective(**xs):
    o = case.fun(**xs, **hp)
    return sum(np.sum(r * o[k]) for k, r in cot.items())

  grads = spec_numpy.complex_grad(objective, x, diff)
  for k in diff:
    np.testing.assert_allclose(
      grads[k], data["grad_" + k], rtol=1e-8, atol=1e-11, err_msg=k
    )


def test_sinkhorn_codes_have_zero_gradient():
  data = load_vectors("sinkhorn_basic")
  scores = jnp.asarray(data["x_scores_f32"])
  r = jax.random.normal(jax.random.key(1), scores.shape)
  grad = jax.grad(lambda s: jnp.sum(r * kernels.sinkhorn_knopp(s)))(scores)
  assert np.all(np.asarray(grad) == 0.0)


def test_mpp_v1_raises():
  data = load_vectors("mpp_v1_raises")
  assert bool(data["expect_error"])
  hp = _hp(data)
  with pytest.raises(ValueError, match="alpha"):
    kernels.mpp_loss(
      jnp.asarray(data["x_z_f32"]),
      jnp.asarray(data["x_c_f32"]),
      tau=hp["tau"],
      alpha=hp["alpha"],
      epsilon=hp["epsilon"],
      num_iters=hp["num_iters"],
    )
