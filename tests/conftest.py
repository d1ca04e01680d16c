"""Test configuration: 8 simulated CPU devices, fixtures, test-vector loading.

``XLA_FLAGS`` must be set before jax is imported anywhere, so it is done here at
import time (pytest imports conftest first).
"""

import json
import os
import pathlib

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags += " --xla_force_host_platform_device_count=8"
# The suite compiles hundreds of small programs and runs most of them a few
# times, so XLA's backend optimisation costs far more than it saves (the
# kernel tests run 2.7x faster without it). Optimisation passes do not change
# what a program computes beyond float rounding, which every tolerance here
# allows for. MSJAX_TEST_XLA_OPT=1 runs the suite fully optimised, as users
# run msjax.
if os.environ.get("MSJAX_TEST_XLA_OPT", "0") != "1" and (
  "xla_backend_optimization_level" not in _flags
):
  _flags += (
    " --xla_backend_optimization_level=0"
    " --xla_llvm_disable_expensive_passes=true"
    " --xla_cpu_use_fusion_emitters=false"
  )
os.environ["XLA_FLAGS"] = _flags.strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Compilation dominates this suite's time on CPU. A persistent cache lets the
# subprocess tests (SIGKILL resume, multi-process) and tests that compile the
# same computation reuse executables; entries are keyed by HLO, jax version and
# flags, so a stale cache cannot change results. Env vars reach subprocesses.
_ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Float32 matrix products at full precision: on GPUs JAX's default lets
# float32 dots run in TF32 (10-bit mantissa), which the test-vector tolerances
# are not written for. MSJAX_TEST_MATMUL_PRECISION=default runs the suite as a
# user's default program would (how the kernels fare under TF32).
jax.config.update(
  "jax_default_matmul_precision",
  os.environ.get("MSJAX_TEST_MATMUL_PRECISION", "highest"),
)

# The kernel tests read msjax's own vectors, computed at test time from the
# independent float64 numpy reference in tests/reference (a bare clone needs
# nothing else). The SPEC's published vectors in ../shared/testvectors (beside
# the project root; MSJAX_SHARED overrides) are an extra cross-check that runs
# when they are present (tests/kernels/test_vectors.py).
SHARED = pathlib.Path(os.environ.get("MSJAX_SHARED", _ROOT.parent / "shared"))
TESTVECTORS = SHARED / "testvectors"


def load_vectors(name: str) -> dict[str, np.ndarray]:
  """Test vector file ``name`` of msjax's own reference (tests/reference)."""
  from tests.reference import vectors

  return vectors.load(name)


def load_tolerances() -> dict:
  """Per-file, per-key float32 tolerances of msjax's own test vectors."""
  from tests.reference import vectors

  return vectors.tolerances()


def shared_vectors_present() -> bool:
  """Whether ../shared/testvectors (or $MSJAX_SHARED/testvectors) exists."""
  return (TESTVECTORS / "tolerances.json").is_file()


def load_shared_vectors(name: str) -> dict[str, np.ndarray]:
  """Loads the published ``testvectors/<name>.npz`` as a dict of arrays."""
  path = TESTVECTORS / f"{name}.npz"
  if not path.exists():
    raise FileNotFoundError(
      f"{path} not found: the published test vectors live in"
      " ../shared/testvectors beside the project root (MSJAX_SHARED overrides)."
    )
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


def load_shared_tolerances() -> dict:
  """Per-file, per-key float32 tolerances of the published vectors."""
  return json.loads((TESTVECTORS / "tolerances.json").read_text())


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture
def x64():
  """Enables float64 for one test and restores the previous setting."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)


# Modules whose tests compile whole models (tens of seconds each), the
# heaviest first (module totals of single-process cold-cache runs, sessions
# 17-18: equivalence ~230-270 s, InfoMAE ~120 s, temporal baselines ~120 s).
# Running them first lets pytest-xdist overlap them with the many short tests
# instead of leaving one worker busy with a long tail. pyproject's addopts
# pass --no-loadscope-reorder: xdist's default reorders modules by their
# number of tests, which put the heavy two- and three-test modules (learning
# tests) last. The order is deterministic, as xdist requires every worker to
# collect the same sequence.
_HEAVY_FIRST = (
  "tests/train/test_equivalence.py",
  "tests/methods/test_infomae.py",
  "tests/methods/test_baselines_temporal.py",
  "tests/methods/test_baselines_selfsup.py",
  "tests/data/test_real_configs.py",
  "tests/methods/test_learning_seeds.py",
  "tests/methods/test_ogm_ge_slip.py",
  "tests/data/test_npz_byod.py",
  "tests/methods/test_protomm_between.py",
  "tests/claims/test_claims.py",
  "tests/methods/test_moco.py",
  "tests/methods/test_cav_mae.py",
  "tests/train/test_sigkill.py",
  "tests/test_compile_cache.py",
  "tests/methods/",
  "tests/train/test_multiprocess.py",
  "tests/data/test_npz_methods.py",
  "tests/nn/",
)


def pytest_collection_modifyitems(config, items):
  del config

  def rank(item) -> int:
    path = pathlib.Path(str(item.fspath)).resolve().relative_to(_ROOT)
    for index, prefix in enumerate(_HEAVY_FIRST):
      if path.as_posix().startswith(prefix):
        return index
    return len(_HEAVY_FIRST)

  items.sort(key=rank)
