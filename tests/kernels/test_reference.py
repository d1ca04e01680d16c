"""The numpy reference behind the test vectors (tests/reference) checks itself.

The vectors are only as good as the reference, so: its complex-step gradients
agree with central differences, stop-gradients have zero derivative, its
outputs satisfy the SPEC's invariants, and its float32 run (the tolerances)
stays in float32. None of this imports msjax.
"""

import numpy as np
import pytest

from tests.reference import spec_numpy as ref
from tests.reference import vectors


def _central(fun, x, direction, step=1e-6):
  return (fun(x + step * direction) - fun(x - step * direction)) / (2 * step)


@pytest.mark.parametrize(
  "name", ["ntxent_basic", "pro_ucl_basic", "temporal_basic", "ot_eps_basic"]
)
def test_complex_step_matches_central_differences(name):
  data = vectors.load(name)
  case = vectors.CASES[name]
  x = {k[2:]: v for k, v in data.items() if k[:2] == "x_" and k[-4:] != "_f32"}
  hp = {k[3:]: v.item() for k, v in data.items() if k.startswith("hp_")}
  cot = {k[2:]: v for k, v in data.items() if k.startswith("r_")}
  rng = np.random.default_rng(0)
  for k in case.diff:
    direction = rng.standard_normal(x[k].shape)

    def along(v, k=k):
      o = case.fun(**{**x, k: v}, **hp)
      return sum(np.sum(r * o[n]) for n, r in cot.items())

    numeric = _central(along, x[k], direction)
    analytic = np.sum(data["grad_" + k] * direction)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_stop_gradient_has_zero_derivative():
  scores = np.random.default_rng(1).standard_normal((8, 6))
  grads = ref.complex_grad(
    lambda s: np.sum(ref.sinkhorn_knopp(s) * np.arange(6)), {"s": scores}, "s"
  )
  assert np.all(grads["s"] == 0)


def test_outputs_satisfy_spec_invariants():
  codes = vectors.load("sinkhorn_rect")["out_codes"]
  np.testing.assert_allclose(codes.sum(-1), 1.0, rtol=1e-12)
  st = vectors.load("samobal_train_st")
  np.testing.assert_array_equal(st["out_hard"].sum(1), 1.0)
  np.testing.assert_array_equal(st["out_w"], st["out_hard"])
  np.testing.assert_allclose(np.linalg.norm(st["out_z_fus"], axis=-1), 1.0)
  ot = vectors.load("ot_eps_basic")
  np.testing.assert_allclose(ot["out_T"].sum(-2), ot["x_b"], atol=1e-9)
  hard = vectors.load("samobal_train_hard")
  assert np.all(hard["grad_P"] == 0)  # the selection is piecewise constant


def test_float32_run_stays_in_float32():
  data = vectors.load("mpp_basic")
  out = ref.mpp_loss(data["x_z_f32"], data["x_c_f32"], alpha=0.5)
  assert all(np.asarray(v).dtype == np.float32 for v in out.values())


def test_vectors_are_deterministic_and_tolerances_cover_every_key():
  first, second = vectors.load("info_nce_basic"), vectors.load("info_nce_basic")
  first["x_a"][0, 0] += 1.0  # load hands out copies
  assert second["x_a"][0, 0] != first["x_a"][0, 0]
  tols = vectors.tolerances()["mpp_basic"]
  data = vectors.load("mpp_basic")
  checked = {k for k in data if k.startswith(("out_", "grad_", "gradtan_"))}
  assert set(tols) == checked
  assert all(t == "exact" or 0 < t["atol"] < 1e-3 for t in tols.values())
