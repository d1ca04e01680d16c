"""Tests for msjax.methods.infomae (SPEC §4) on tiny synthetic spectrograms.

Compilation dominates on CPU, so each stage is initialised and compiled once
per module (fixtures) at XLA optimisation level 0, and the tests share them.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from msjax.data import synthetic
from msjax.kernels.masking import patchify, random_patch_mask, unpatchify
from msjax.methods import infomae
from msjax.methods.infomae import parts
from tests.methods import _seeds_util as su
from tests.methods import _train_util as tu

LR = 1e-2
FAST_COMPILE = {"xla_backend_optimization_level": 0}
SEQ_LEN = 4
BATCH = 16  # 4 sequences of 4 consecutive windows


def _data_config() -> ml_collections.ConfigDict:
  dc = synthetic.default_config(smoke=True)
  dc.representation = "stft"
  dc.stft.output = "magnitude"
  dc.num_sessions = 16
  dc.windows_per_session = 16
  dc.task = "shared"
  return dc


def _config(stage: int, **loss) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(
    dict(data=_data_config(), **infomae.default_config("tiny"))
  )
  c.loss.stage = stage
  c.loss.seq_len = SEQ_LEN
  c.loss.update(loss)
  return c


@functools.cache
def _sources() -> tuple:
  dc = _data_config()
  return (
    synthetic.SyntheticSource(dc, "train"),
    synthetic.SyntheticSource(dc, "test"),
  )


def _sequence_batch(source, step: int) -> dict:
  """``BATCH // SEQ_LEN`` runs of ``SEQ_LEN`` consecutive windows."""
  meta = source.get(np.arange(source.num_examples))
  session, time = meta["session"], meta["time_index"]
  starts = [
    i
    for i in range(len(session) - SEQ_LEN + 1)
    if session[i + SEQ_LEN - 1] == session[i]
    and time[i + SEQ_LEN - 1] == time[i] + SEQ_LEN - 1
  ]
  rng = np.random.default_rng(step)
  picked = rng.choice(starts, BATCH // SEQ_LEN, replace=False)
  idx = (picked[:, None] + np.arange(SEQ_LEN)[None]).reshape(-1)
  batch = source.get(idx)
  return {"signals": batch["signals"], "label": batch["label"]}


def _optimizer(config) -> optax.GradientTransformation:
  return optax.multi_transform(
    {
      "main": optax.adam(LR),
      "discriminators": optax.adam(1e-3),
      "frozen": optax.set_to_zero(),
    },
    functools.partial(infomae.param_labels, config=config),
  )


def _make_train_step(config):
  """A jitted optax step. It differentiates ``loss + (disc_weight - 1) *
  L_D``: the returned loss itself at ``disc_weight = 1`` (the training
  objective); other weights let a test separate the two objectives' grads
  without compiling anything else."""
  tx = _optimizer(config)

  @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
  def step(params, opt_state, batch, key, disc_weight):
    def objective(params):
      loss, (_, metrics) = infomae.loss_fn(
        {"params": params}, batch, key, config, jnp.int32(0)
      )
      extra = metrics.get("loss/disc", 0.0)  # stage 1 has no L_D
      return loss + (disc_weight - 1.0) * extra, (loss, metrics)

    grads, (loss, metrics) = jax.grad(objective, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (
      optax.apply_updates(params, updates),
      opt_state,
      loss,
      metrics,
      grads,
    )

  return tx, step


class _Stage:
  """One stage's config, initial variables and compiled train step."""

  def __init__(self, stage: int):
    self.config = _config(stage)
    self.batch = _sequence_batch(_sources()[0], 0)
    init = jax.jit(
      lambda k, b: infomae.init(k, self.config, b),
      compiler_options=FAST_COMPILE,
    )
    self.variables = init(jax.random.key(0), self.batch)
    self.tx, self.step = _make_train_step(self.config)

  def train(self, num_steps: int):
    """Trains from the initial variables; also returns the metrics on one
    fixed batch and key before and after training (a step computes them
    before its update)."""
    params = self.variables["params"]
    opt_state = self.tx.init(params)
    fixed = (_sequence_batch(_sources()[0], 999), jax.random.key(999))
    before = self.step(params, opt_state, *fixed, 1.0)[3]
    losses, metrics = [], None
    for i in range(num_steps):
      batch = _sequence_batch(_sources()[0], i)
      params, opt_state, loss, metrics, _ = self.step(
        params, opt_state, batch, jax.random.key(100 + i), 1.0
      )
      losses.append(float(loss))
    after = self.step(params, opt_state, *fixed, 1.0)[3]
    return params, (before, after), metrics


@pytest.fixture(scope="module")
def stage1():
  return _Stage(1)


@pytest.fixture(scope="module")
def stage2():
  return _Stage(2)


@pytest.fixture(scope="module")
def stage2_trained(stage2):
  return stage2.train(30)


def test_stage1_loss_finite_and_lowered_by_training(stage1):
  _, (before, after), metrics = stage1.train(12)
  assert set(metrics) == {
    "loss/total",
    "loss/rec",
    "loss/rec/ppg",
    "loss/rec/acc",
  }
  assert all(np.isfinite(float(v)) for v in metrics.values())
  np.testing.assert_allclose(
    metrics["loss/rec"],
    metrics["loss/rec/ppg"] + metrics["loss/rec/acc"],
    rtol=1e-6,
  )
  b, a = float(before["loss/total"]), float(after["loss/total"])
  assert a < 0.8 * b, (b, a)


def test_stage2_metrics_finite_and_training_lowers_main_loss(
  stage2, stage2_trained
):
  _, (before, after), metrics = stage2_trained
  expected = {
    "loss/total",
    "loss/main",
    "loss/disc",
    "loss/shared",
    "loss/private",
    "loss/rec",
    "loss/aug",
    "loss/temp",
    "loss/rec/ppg",
    "loss/rec/acc",
    "disc/accuracy",
    "disc/measured",
    "data/paired_fraction",
  }
  expected |= {f"disc/{s.name}" for s in parts.DISCRIMINATORS}
  assert set(metrics) == expected
  assert all(np.isfinite(float(v)) for v in metrics.values())
  np.testing.assert_allclose(
    metrics["loss/total"],
    metrics["loss/main"] + metrics["loss/disc"],
    rtol=1e-5,
  )
  assert float(metrics["loss/temp"]) > 0.0
  for key in ("loss/total", "loss/rec", "loss/aug"):
    b, a = float(before[key]), float(after[key])
    assert a < b, (key, b, a)


def test_gradient_routing_between_optimisers(stage2):
  """grad(L_main + L_D) = grad L_D on discriminators, grad L_main elsewhere.

  With ``g_w = grad(L_main + w L_D)``: ``grad L_D = g_2 - g_1`` and
  ``grad L_main = 2 g_1 - g_2``. L_main must not reach the discriminators
  and L_D must not reach any other module.
  """
  params = stage2.variables["params"]
  args = (params, stage2.tx.init(params), stage2.batch, jax.random.key(3))
  g1 = stage2.step(*args, 1.0)[4]
  g2 = stage2.step(*args, 2.0)[4]
  grad_disc = jax.tree.map(lambda a, b: b - a, g1, g2)
  grad_main = jax.tree.map(lambda a, b: 2 * a - b, g1, g2)
  for name in params:
    zero = grad_main if name == "discriminators" else grad_disc
    for leaf in jax.tree.leaves(zero[name]):
      np.testing.assert_allclose(leaf, 0.0, atol=1e-6, err_msg=name)
  # Both objectives actually move their own parameters.
  norm = lambda t: float(optax.tree.norm(t))  # noqa: E731
  assert norm(grad_disc["discriminators"]) > 1e-4
  for name in ("encoder_ppg", "shared_acc", "private_ppg", "decoder_acc"):
    assert norm(grad_main[name]) > 1e-6, name


def test_encoder_sees_only_visible_patches(stage1):
  config = stage1.config
  x = parts.prepare_input(stage1.batch["signals"]["ppg"], "ppg", config)
  patches = patchify(x, patch_size=tuple(config.model.patch_size))
  mask = random_patch_mask(
    jax.random.key(5),
    x.shape[0],
    patches.shape[1],
    mask_ratio=config.loss.mask_ratio,
  )
  noise = np.random.default_rng(0).normal(size=patches.shape) * 10
  changed = jnp.where(mask.mask[..., None], patches + noise, patches)
  x2 = unpatchify(
    changed, patch_size=tuple(config.model.patch_size), image_shape=x.shape[1:]
  )
  enc = parts.encoder(config)
  apply = jax.jit(
    lambda x, ids: enc.apply(
      {"params": stage1.variables["params"]["encoder_ppg"]}, x, ids, train=False
    )[0],
    compiler_options=FAST_COMPILE,
  )
  f1, f2 = apply(x, mask.ids_keep), apply(x2, mask.ids_keep)
  np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-6)
  # Sanity: the same change without masking does change the output.
  full = jnp.tile(jnp.arange(patches.shape[1])[None], (x.shape[0], 1))
  assert not np.allclose(apply(x, full), apply(x2, full), atol=1e-3)


def test_stage2_probe_beats_random_encoder_on_every_seed():
  """Stage 2 from scratch on seeds 0-2 (one vmapped step, XLA level 0).

  With ``model.center_features`` (docs/claims.md, "InfoMAE stage 2
  collapsed at its start"; the suite's and experiments' setting), the
  fused probe on the encoders and on ``concat(U, V)`` beats the random
  encoder on every seed. Margins at 160 steps, encoder / projections:
  seeds 0-2 0.195, 0.148, 0.125 / 0.141, 0.113, 0.105; seeds 3-5 0.172,
  0.242, 0.195 / 0.121, 0.246, 0.184 (at 80 steps seeds 3-5 gave
  projections 0.016, 0.215, 0.023: docs/claims.md, "The learning tests on
  other seeds").
  """
  config = _config(2)
  config.model.center_features = True
  config.data.num_sessions = 64  # 256 test windows
  runs = su.train_seeds(
    infomae.METHOD,
    config,
    steps=160,
    probed="fused",
    batch_size=BATCH,
    sequence_length=SEQ_LEN,
    optimizer=_optimizer(config),
    compiler_options=FAST_COMPILE,
    vmap_seeds=True,  # SWIN: the vmapped step is the faster one
  )
  assert all(run.last_loss < run.first_loss for run in runs)
  encoder = [round(run.margin, 3) for run in runs]
  projections = config.copy_and_resolve_references()
  projections.model.eval_features = "projections"
  accs = tu.probe_accuracies(
    infomae.METHOD,
    [run.initial for run in runs] + [run.variables for run in runs],
    projections,
    *tu.sources(config),
  )
  projected = [round(b - a, 3) for a, b in zip(accs[:3], accs[3:], strict=True)]
  assert min(encoder) > 0.08, encoder
  assert min(projected) > 0.04 and np.mean(projected) > 0.07, projected


# Measured (seeds 0/1/2, trained - random fused probe): encoder 0.207,
# 0.145, 0.105; projections 0.117, 0.098, 0.086. After 2 steps instead of
# 80 (no learning yet): encoder 0.047, 0.031, -0.008; projections 0.059,
# 0.035, 0.008. Without center_features (SPEC) 80 steps give only 0.047,
# 0.059, 0.141 / 0.016, 0.023, 0.082: the uncentred stage 2 barely moves
# the encoders (its projections collapse).


def test_eval_features_choose_encoder_or_projections(stage2):
  """Stage-2 embed: the pooled encoder output, or concat(U, V) of it."""
  config = stage2.config.copy_and_resolve_references()
  params = stage2.variables["params"]
  signals = stage2.batch["signals"]
  expected = {}
  for m in config.data.modalities:
    x = parts.prepare_input(signals[m], m, config)
    feat, _ = parts.encoder(config).apply(
      {"params": params[f"encoder_{m}"]}, x, train=False
    )
    u, v = (
      parts.projector(config, kind).apply(
        {"params": params[f"{kind}_{m}"]}, feat, train=False
      )
      for kind in ("shared", "private")
    )
    expected[m] = {"encoder": feat, "projections": np.concatenate([u, v], -1)}
  for features in ("encoder", "projections"):
    config.model.eval_features = features
    out = infomae.embed(stage2.variables, {"signals": signals}, config)
    for m in config.data.modalities:
      np.testing.assert_allclose(out[m], expected[m][features], atol=1e-5)
    np.testing.assert_allclose(
      out["fused"],
      np.concatenate(
        [expected[m][features] for m in config.data.modalities], -1
      ),
      atol=1e-5,
    )
  assert not np.allclose(
    expected["acc"]["encoder"], expected["acc"]["projections"], atol=1e-3
  )
  config.model.eval_features = "decoder"
  with pytest.raises(ValueError, match="model.eval_features='decoder'"):
    infomae.embed(stage2.variables, {"signals": signals}, config)


def test_init_from_stage1_copies_encoders_only(stage1, stage2):
  # Shift the stage-1 parameters so copied leaves are recognisable.
  p1 = jax.tree.map(lambda a: a + 1.0, stage1.variables["params"])
  p2 = stage2.variables["params"]
  merged = infomae.init_from_stage1(
    stage2.variables, {"params": p1}, stage2.config
  )["params"]
  assert set(merged) == set(p2)
  for name in merged:
    source = p1 if name.startswith("encoder_") else p2
    for a, b in zip(
      jax.tree.leaves(merged[name]), jax.tree.leaves(source[name]), strict=True
    ):
      np.testing.assert_array_equal(a, b)
  # Stage-1 decoders (different input width) are not copied.
  assert not np.array_equal(
    merged["decoder_ppg"]["pos_embed"], p1["decoder_ppg"]["pos_embed"]
  )
  broken = {"params": {k: v for k, v in p1.items() if k != "encoder_acc"}}
  with pytest.raises(ValueError, match="encoder_acc"):
    infomae.init_from_stage1(stage2.variables, broken, stage2.config)


def test_param_labels(stage1, stage2):
  labels = infomae.param_labels(stage2.variables["params"], stage2.config)
  assert set(jax.tree.leaves(labels["discriminators"])) == {"discriminators"}
  assert set(jax.tree.leaves(labels["encoder_ppg"])) == {"main"}
  frozen_config = _config(2)
  frozen_config.model.freeze_encoders = True
  labels = infomae.param_labels(stage2.variables["params"], frozen_config)
  assert set(jax.tree.leaves(labels["encoder_acc"])) == {"frozen"}
  assert set(jax.tree.leaves(labels["decoder_acc"])) == {"main"}
  labels = infomae.param_labels(stage1.variables["params"], stage1.config)
  assert set(jax.tree.leaves(labels)) == {"main"}


def test_bad_config_and_input_rejected(stage2):
  bad = _config(3)
  with pytest.raises(ValueError, match="loss.stage"):
    infomae.loss_fn(stage2.variables, stage2.batch, jax.random.key(0), bad, 0)
  three = _config(2)
  three.data.modalities = ("ppg",)
  with pytest.raises(ValueError, match="two modalities"):
    infomae.init(jax.random.key(0), three, stage2.batch)
  raw = {
    "signals": {
      "ppg": np.zeros((4, 1, 64), np.float32),
      "acc": np.zeros((4, 3, 32), np.float32),
    }
  }
  with pytest.raises(ValueError, match=r"\[B, C, F, N\]"):
    infomae.embed(stage2.variables, raw, stage2.config)
  with pytest.raises(ValueError, match="size"):
    infomae.default_config("huge")
