"""Shared helpers of the kernel tests: test vectors, finite differences.

The vectors come from msjax's own float64 numpy reference of the SPEC
(``tests/reference``, computed at test time from fixed seeds). Test modules run
each vector test in float32 (``x_*_f32`` inputs, per-key tolerances derived by
the reference) and in float64 (``x_*`` inputs, tight fixed tolerances).
Import the ``precision`` fixture into a test module to parametrize its tests
over both.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import load_tolerances, load_vectors

F64_RTOL = 1e-8
F64_ATOL = 1e-10


@pytest.fixture(params=["f32", "f64"])
def precision(request):
  """Runs a test in float32 (x_*_f32 inputs) and in float64 (x_* inputs)."""
  if request.param == "f64":
    request.getfixturevalue("x64")
  return request.param


def suffix(precision):
  """The suffix of a vector file's input keys at ``precision``."""
  return "" if precision == "f64" else "_f32"


def inputs(vec, precision, *names):
  """The ``x_<name>`` inputs of ``vec`` at ``precision``, in order."""
  sfx = suffix(precision)
  return [vec[f"x_{n}{sfx}"] for n in names]


def assert_vectors(name, precision, actual):
  """Compares ``actual`` outputs with the test vector file ``name``.

  In float64 every value must match to rtol 1e-8, atol 1e-10, and be float64
  where the stored value is floating (integer outputs keep their dtype).
  In float32 a key whose tolerance is ``"exact"`` must match exactly; any other
  value must be float32 and match to the key's tolerance.

  Args:
    name: The vector file, without ``.npz``.
    precision: ``"f32"`` or ``"f64"``.
    actual: Maps a key of the file to the value computed for it.
  """
  vec = load_vectors(name)
  tols = load_tolerances()[name]
  for key, value in actual.items():
    value = np.asarray(value)
    if precision == "f64":
      if np.issubdtype(vec[key].dtype, np.floating):
        assert value.dtype == np.float64, key
      np.testing.assert_allclose(
        value, vec[key], rtol=F64_RTOL, atol=F64_ATOL, err_msg=key
      )
    elif tols[key] == "exact":
      np.testing.assert_array_equal(value, vec[key], err_msg=key)
    else:
      assert value.dtype == np.float32, key
      np.testing.assert_allclose(value, vec[key], **tols[key], err_msg=key)


def central_fd(fun, args, argnum, seed=0, step=1e-6, atol=1e-8):
  """Checks a directional central difference of scalar ``fun`` vs its grad.

  Args:
    fun: A scalar function of ``args``.
    args: Its positional arguments.
    argnum: Which argument to perturb, along a random normal direction.
    seed: Seed of the direction.
    step: The finite-difference step.
    atol: Absolute tolerance of the comparison (rtol is 1e-6).
  """
  args = [jnp.asarray(a) for a in args]
  direction = np.random.default_rng(seed).normal(size=args[argnum].shape)

  def at(scale):
    moved = list(args)
    moved[argnum] = args[argnum] + scale * direction
    return float(fun(*moved))

  numeric = (at(step) - at(-step)) / (2 * step)
  analytic = float(jnp.sum(jax.grad(fun, argnums=argnum)(*args) * direction))
  np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=atol)


def unit(x):
  """Normalizes ``x`` to unit L2 norm along its last axis."""
  return x / np.linalg.norm(x, axis=-1, keepdims=True)
