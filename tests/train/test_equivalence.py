"""One train step on 8 simulated devices equals the same step on 1 device.

Every method of ``msjax.methods.METHODS`` (smoke experiment configs, marked
slow: compiling a real model twice costs tens of CPU seconds) plus the toy
method (three optimiser groups, with and without FSDP). The batch is
identical; only the mesh differs, so any difference comes from sharding.

Tolerance: float32 reductions run in a different order across 8 shards, so
loss, metrics and parameters agree to rtol 2e-5 / atol 2e-6 (parameters:
atol 2e-6 + 2e-5 x the leaf's largest magnitude). The real
methods are stepped with plain SGD: Adam's first update is
``lr * g / (|g| + eps)``, which turns gradients that are rounding noise
(e.g. biases followed by BatchNorm, exactly zero in exact arithmetic) into
updates of size ``lr`` whose sign depends on the reduction order. Steps are
compiled at a low XLA CPU optimisation level to keep the test fast, and the
8-device run starts from the 1-device run's initial state (the born-sharded
initialisation is compared bitwise on the toy method).
"""

import pathlib

import jax
import numpy as np
import pytest

from msjax.train import config_lib, runtime, sharding
from msjax.train.feed import BatchFeed
from msjax.train.step import TrainSetup
from tests.train import toy

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = {
  "protomm": "protomm.py:smoke",
  "promobal": "promobal.py:smoke",
  # Stage 2 runs stage 1's masked encoder/decoder pass too; two of the five
  # discriminator layers and one SWIN block (no shifted window) keep its
  # compile short (depth is not what sharding can change).
  "infomae_stage2": "infomae.py:smoke,stage=2",
  "supervised_concat": "baselines.py:smoke,method=supervised_concat",
  "slip": "baselines.py:smoke,method=slip",
  "ogm_ge": "baselines.py:smoke,method=ogm_ge",
  "agm": "baselines.py:smoke,method=agm",
  "mla": "baselines.py:smoke,method=mla",
  "mmpareto": "baselines.py:smoke,method=mmpareto",
  "tnc": "baselines.py:smoke,method=tnc",
  "tstcc": "baselines.py:smoke,method=tstcc",
  "focal": "baselines.py:smoke,method=focal",
  "gmc": "baselines.py:smoke,method=gmc",
  "cocoa": "baselines.py:smoke,method=cocoa",
  "cav_mae": "baselines.py:smoke,method=cav_mae",
  "moco": "baselines.py:smoke,method=moco",
}
RTOL, ATOL = 2e-5, 2e-6
# Compile options for both meshes: no backend optimisation and the classic
# (non-MLIR) fusion emitters compile these graphs 25-30% faster on CPU. The
# conftest sets the same flags suite-wide unless MSJAX_TEST_XLA_OPT=1; here
# they hold either way.
FAST_COMPILE = {
  "xla_backend_optimization_level": 0,
  "xla_llvm_disable_expensive_passes": True,
  "xla_cpu_use_fusion_emitters": False,
}


def _case(name):
  if name.startswith("toy"):
    config = toy.get_config()
    if name == "toy_fsdp":
      config_lib.apply_overrides(
        config, ["train.mesh.fsdp=2", "train.mesh.fsdp_min_size=1"]
      )
    return config, toy.METHOD, toy.make_source(config.data, "train")
  overrides = [
    "optim.optimizer=sgd",
    "optim.momentum=0.0",
    "optim.learning_rate=1e-3",
  ]
  if name == "infomae_stage2":
    overrides += ["model.disc.num_layers=2", "model.swin.depths=(1,)"]
  config = config_lib.load_config(
    str(ROOT / "experiments" / EXPERIMENTS[name]), overrides
  )
  for group in config.optim.groups.values():
    with group.unlocked():
      group.optimizer, group.momentum = "sgd", 0.0
  return (
    config,
    runtime.get_method(config.method),
    runtime.open_source(config.data, "train"),
  )


def _one_step(config, method, source, devices, fsdp, initial=None):
  """One step on ``devices``; returns ``((state, metrics), initial, setup)``.

  ``initial`` (a host state) replaces the born-sharded initialisation: an
  init program (one RNG loop per parameter) compiles about as slowly as the
  step, and whether it is mesh-independent is checked once, on the toy
  method, rather than per method.
  """
  with config.unlocked():
    config.train.mesh.fsdp = fsdp
    config.train.mesh.data = len(devices) // fsdp
  mesh = sharding.make_mesh(config.train.mesh, devices)
  feed = BatchFeed(source, config, mesh)
  setup = TrainSetup(method, config, mesh, feed.host_batch(0))
  if initial is None:
    state = setup.init_fn.lower(setup.seed).compile(FAST_COMPILE)(setup.seed)
    initial = jax.device_get(state)
  else:
    state = jax.device_put(initial, setup.state_sharding)
  batch = feed(0)
  step = setup.step_fn.lower(state, batch, setup.seed).compile(FAST_COMPILE)
  state, metrics = step(state, batch, setup.seed)
  return jax.device_get((state, metrics)), initial, setup


#: Methods whose step is a covered method's code behind a switch, with no
#: batch-axis operation of their own (what sharding could change):
#: msjax.methods.selfsup's SLIP step holds SimCLR's two augmented views and
#: per-modality NT-Xent, and CLIP's InfoNCE between modalities on the same
#: forward pass; joint runs the same views and NT-Xent on one projector of
#: the per-modality features concatenated along the feature axis;
#: msjax.methods.supervised's sum and concat differ in an elementwise fusion
#: of per-modality outputs; the mae baseline is InfoMAE with ``loss.stage =
#: 1``, whose masked encoder/decoder pass InfoMAE's stage-2 step runs too.
#: Their compiles would add ~55 s to the suite.
COVERED_BY = {
  "simclr": "slip",
  "joint": "slip",
  "clip": "slip",
  "supervised_sum": "supervised_concat",
  "mae": "infomae",
}


def test_every_method_is_covered():
  from msjax.methods import METHODS

  methods = {name.split("_stage")[0] for name in EXPERIMENTS}
  assert set(COVERED_BY.values()) <= methods
  covered = methods | set(COVERED_BY)
  assert covered == set(METHODS), covered ^ set(METHODS)


@pytest.mark.parametrize(
  "name",
  [
    "toy",
    "toy_fsdp",
    *(pytest.param(n, marks=pytest.mark.slow) for n in EXPERIMENTS),
  ],
)
def test_one_step_on_eight_devices_equals_one_device(name):
  config, method, source = _case(name)
  fsdp = config.train.mesh.fsdp
  single, initial, _ = _one_step(config, method, source, jax.devices()[:1], 1)
  if name.startswith("toy"):
    # The born-sharded init on 8 devices equals the one-device init.
    multi, multi_initial, setup = _one_step(
      config, method, source, jax.devices(), fsdp
    )
    for a, b in zip(
      jax.tree.leaves(initial), jax.tree.leaves(multi_initial), strict=True
    ):
      np.testing.assert_array_equal(a, b)
  else:
    multi, _, setup = _one_step(
      config, method, source, jax.devices(), fsdp, initial=initial
    )
  if name == "toy_fsdp":
    specs = {s.spec for s in jax.tree.leaves(setup.state_sharding)}
    assert jax.sharding.PartitionSpec("fsdp", None) in specs
  assert np.isfinite(single[1]["loss"])
  np.testing.assert_allclose(
    multi[1]["loss"], single[1]["loss"], rtol=RTOL, atol=ATOL
  )
  for key in single[1]:
    np.testing.assert_allclose(
      multi[1][key], single[1][key], rtol=RTOL, atol=ATOL, err_msg=key
    )
  flat_single = jax.tree_util.tree_leaves_with_path(single[0]["params"])
  flat_multi = jax.tree.leaves(multi[0]["params"])
  for (path, a), b in zip(flat_single, flat_multi, strict=True):
    # Scale-aware: an entry that is a cancellation inside a large leaf carries
    # the rounding error of the leaf's magnitude.
    scale = float(np.max(np.abs(a), initial=0.0))
    np.testing.assert_allclose(
      b,
      a,
      rtol=RTOL,
      atol=ATOL + RTOL * scale,
      err_msg=jax.tree_util.keystr(path),
    )
