"""Every matrix product inside the kernels runs at full float32 precision.

JAX's default matmul precision lets float32 products run in TF32 on GPUs
(10-bit mantissa), which broke 11 of the float32 test-vector files on an H100
(logits off by ~1e-3 relative). The kernels therefore pin
``Precision.HIGHEST`` on their own products. On CPU that choice is invisible
in the numbers, so this test checks the traced programs instead: every
``dot_general`` of every test-vector call, forward and backward, traced under
the *default* precision setting, must carry ``HIGHEST`` on both operands.
"""

import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jax_core

from tests.conftest import load_vectors
from tests.kernels.test_vectors import CASES, NON_DIFF, _hp, _inputs

# Cases whose float32 vectors failed under TF32 on an H100: each must contain
# products, so the check below is not vacuous for them.
FAILED_UNDER_TF32 = {
  "fc_rs_basic",
  "info_nce_basic",
  "mpp_basic",
  "mpp_swav_alpha1",
  "mpp_v1_alpha0",
  "ntxent_basic",
  "pro_fd_basic",
  "pro_fd_tau03",
  "pro_ucl_basic",
  "samobal_infer_bank_max",
  "samobal_infer_own",
}


def _dot_precisions(jaxpr) -> list:
  """``precision`` params of every dot_general, sub-jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn.params["precision"])
    for sub in jax_core.jaxprs_in_params(eqn.params):
      found.extend(_dot_precisions(sub))
  return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_products_pin_highest_precision(name):
  data = load_vectors(name)
  x, hp, fn = _inputs(data, use_f64=False), _hp(data), CASES[name]
  float_keys = [
    k
    for k, v in x.items()
    if k not in NON_DIFF and jnp.issubdtype(v.dtype, jnp.floating)
  ]

  def objective(diff_x):
    outs = fn({**x, **diff_x}, hp)
    return sum(
      jnp.sum(v) for v in outs.values() if jnp.issubdtype(v.dtype, jnp.floating)
    )

  with jax.default_matmul_precision("default"):
    jaxpr = jax.make_jaxpr(jax.value_and_grad(objective))(
      {k: x[k] for k in float_keys}
    )
  precisions = _dot_precisions(jaxpr.jaxpr)
  if name in FAILED_UNDER_TF32:
    assert precisions, f"{name}: no matrix products traced"
  highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
  assert all(p == highest for p in precisions), (name, precisions)
