"""InfoMAE stage 2 on pair-ratio batches, and its reconstruction options.

Unpaired rows (``batch["paired"] = False``: modalities from different
windows) must feed only the unimodal terms; the cross-modal terms are the
means over the synchronized rows.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from msjax.data import synthetic
from msjax.methods import infomae
from msjax.methods.infomae import parts
from msjax.methods.infomae.losses import paired_info_nce

B = 8


def _config(**model):
  data = synthetic.default_config(smoke=True)
  data.representation = "stft"
  data.stft.output = "real_imag"
  c = ml_collections.ConfigDict(
    dict(data=data, **infomae.default_config("tiny"))
  )
  c.loss.seq_len = 1
  # One SWIN block and two discriminator layers: these tests check which
  # rows reach which term and the terms' formulas, not depth (compiles and
  # eager calls take half the time).
  c.model.swin.depths = (1,)
  c.model.disc.num_layers = 2
  c.model.swin.update(model)
  return c


@pytest.fixture(scope="module")
def setup():
  config = _config()
  source = synthetic.SyntheticSource(config.data, "train")
  batch = source.get(np.arange(B))
  variables = jax.jit(lambda k: infomae.init(k, config, batch))(
    jax.random.key(0)
  )
  fn = jax.jit(
    lambda v, b: infomae.loss_fn(v, b, jax.random.key(1), config, 0)[1][1]
  )
  return config, source, batch, variables, fn


def test_unpaired_rows_do_not_reach_the_cross_modal_terms(setup):
  config, source, batch, variables, metrics_of = setup
  paired = np.array([1, 1, 0, 1, 0, 0, 1, 0], bool)
  other = source.get(np.arange(B, 2 * B))
  # Unpaired rows: the motion stream of other windows (not synchronized).
  mixed = {
    "signals": {
      "ppg": batch["signals"]["ppg"],
      "acc": np.where(
        paired[:, None, None, None],
        batch["signals"]["acc"],
        other["signals"]["acc"],
      ),
    },
    "label": batch["label"],
    "paired": paired,
  }
  changed = {
    **mixed,
    "signals": {
      "ppg": mixed["signals"]["ppg"],
      "acc": np.where(
        paired[:, None, None, None],
        mixed["signals"]["acc"],
        mixed["signals"]["acc"][::-1] * 3.0,
      ),
    },
  }
  a, b = metrics_of(variables, mixed), metrics_of(variables, changed)
  for key in ("loss/shared", "loss/private"):
    np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)
  assert abs(float(a["loss/rec"]) - float(b["loss/rec"])) > 1e-4
  assert float(a["data/paired_fraction"]) == pytest.approx(paired.mean())


def test_all_paired_equals_no_paired_key(setup):
  _, _, batch, variables, metrics_of = setup
  plain = {"signals": batch["signals"], "label": batch["label"]}
  flagged = {**plain, "paired": np.ones(B, bool)}
  a, b = metrics_of(variables, plain), metrics_of(variables, flagged)
  for key in ("loss/total", "loss/shared", "loss/disc"):
    np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)
  assert not infomae.requires_paired_rows(_config())


def test_a_batch_without_pairs_scores_no_discriminator(setup):
  _, _, batch, variables, metrics_of = setup
  plain = {"signals": batch["signals"], "label": batch["label"]}
  some = np.zeros(B, bool)
  some[:3] = True
  none = metrics_of(variables, {**plain, "paired": np.zeros(B, bool)})
  three = metrics_of(variables, {**plain, "paired": some})
  names = [f"disc/{spec.name}" for spec in parts.DISCRIMINATORS]
  assert float(none["disc/measured"]) == 0.0
  assert float(three["disc/measured"]) == 1.0
  for key in (*names, "disc/accuracy", "loss/disc"):
    assert float(none[key]) == 0.0, key
    assert float(three[key]) > 0.0, key


def test_pair_log_magnitude_target_is_log1p_of_each_pairs_modulus():
  config = _config()
  config.loss.rec_target = "pair_log_magnitude"
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 17, 7)).astype(np.float32)
  got = np.asarray(parts.reconstruction_map(jnp.asarray(x), "acc", config))
  want = np.log1p(np.hypot(x[:, 0::2], x[:, 1::2]))
  ph, pw = config.model.patch_size
  assert got.shape == (2, 3, 17 + (-17 % ph), 7 + (-7 % pw))
  np.testing.assert_allclose(got[:, :, :17, :7], want, rtol=1e-5, atol=1e-6)
  assert np.all(got[:, :, 17:] == 0)
  with pytest.raises(ValueError, match="real, imag"):
    parts.reconstruction_map(jnp.asarray(x[:, :5]), "acc", config)


def test_patch_norm_loses_input_amplitude_and_its_option_keeps_it():
  x = jnp.asarray(
    np.random.default_rng(1).normal(size=(2, 2, 34, 8)), jnp.float32
  )
  outputs = {}
  for norm in (True, False):
    enc = parts.encoder(_config(patch_norm=norm))
    params = enc.init(jax.random.key(0), x, train=False)["params"]
    assert ("patch_norm" in params) == norm
    out = lambda v, enc=enc, params=params: enc.apply(
      {"params": params}, v, train=False
    )[0]
    outputs[norm] = (out(x), out(3.0 * x))
  # With the LayerNorm (zero-initialised conv bias) every patch embedding
  # is rescaled to unit variance: the encoder cannot see a 3x louder input.
  np.testing.assert_allclose(*outputs[True], rtol=1e-3, atol=1e-4)
  assert not np.allclose(*outputs[False], rtol=1e-2, atol=1e-3)


def _constant_discriminators(variables: dict, logit: float) -> dict:
  """Every discriminator outputs ``logit`` (output Dense: zero kernel)."""
  discs = {
    name: {
      **p,
      "logit": {
        "kernel": jnp.zeros_like(p["logit"]["kernel"]),
        "bias": jnp.full_like(p["logit"]["bias"], logit),
      },
    }
    for name, p in variables["params"][infomae.DISC_GROUP].items()
  }
  params = {**variables["params"], infomae.DISC_GROUP: discs}
  return {**variables, "params": params}


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_pairwise_mi_direction_sets_the_sign_of_the_pairwise_terms(
  setup, direction
):
  """With every logit t = c, alpha = 0 (SPEC §4.2 weights):

  minimize: L_shared = 2 (c + (1 - beta) c + c), L_private = 2 (gamma + eps) c
  maximize: L_shared = 2 (c - (1 - beta) c - c), L_private = 2 (eps - gamma) c
  """
  config, _, batch, variables, _ = setup
  config = config.copy_and_resolve_references()
  config.loss.alpha = 0.0
  config.loss.pairwise_mi = direction
  c, beta = 0.7, config.loss.beta
  gamma, eps = config.loss.gamma, config.loss.vu_weight
  variables = _constant_discriminators(variables, c)
  # One compile instead of op-by-op dispatch (eager, this test took 14 s).
  metrics = jax.jit(
    lambda v, b: infomae.loss_fn(v, b, jax.random.key(1), config, 0)[1][1]
  )(variables, batch)
  sign = 1.0 if direction == "minimize" else -1.0
  want_shared = 2 * (c + sign * (1 - beta) * c + sign * c)
  want_private = 2 * (sign * gamma + eps) * c
  assert float(metrics["loss/shared"]) == pytest.approx(want_shared, rel=1e-5)
  assert float(metrics["loss/private"]) == pytest.approx(want_private, rel=1e-5)


def test_unknown_pairwise_mi_rejected(setup):
  config = setup[0].copy_and_resolve_references()
  config.loss.pairwise_mi = "ignore"
  with pytest.raises(ValueError, match="pairwise_mi must be one of"):
    parts.check_stage(config)


def test_centered_subtracts_batch_mean_in_training_running_mean_in_eval():
  config = _config()
  feat = jnp.asarray(
    np.random.default_rng(2).normal(3.0, 1.0, size=(6, 5)), jnp.float32
  )
  running = jnp.arange(5, dtype=jnp.float32)
  out, kept = parts.centered(feat, running, config, train=True)
  np.testing.assert_array_equal(out, feat)  # option off: SPEC
  np.testing.assert_array_equal(kept, running)
  config.model.center_features = True
  config.model.center_momentum = 0.75
  out, new = parts.centered(feat, running, config, train=True)
  mean = np.asarray(feat).mean(axis=0)
  np.testing.assert_allclose(out, np.asarray(feat) - mean, atol=1e-6)
  np.testing.assert_allclose(new, 0.75 * np.arange(5) + 0.25 * mean, rtol=1e-6)
  out, kept = parts.centered(feat, running, config, train=False)
  np.testing.assert_allclose(out, np.asarray(feat) - np.arange(5), atol=1e-6)
  np.testing.assert_array_equal(kept, running)


def test_center_features_keeps_a_running_mean_that_eval_subtracts(setup):
  config, _, batch, _, _ = setup
  config = config.copy_and_resolve_references()
  config.model.center_features = True
  # Jitted: InfoMAE's ops dispatched one by one compile one by one (22 s).
  variables = jax.jit(lambda k, b: infomae.init(k, config, b))(
    jax.random.key(0), batch
  )
  means = variables["batch_stats"]["feature_mean"]
  assert set(means) == set(config.data.modalities)
  assert all(np.all(np.asarray(v) == 0) for v in means.values())
  _, (state, _) = jax.jit(lambda v, b, k: infomae.loss_fn(v, b, k, config, 0))(
    variables, batch, jax.random.key(1)
  )
  new = state["batch_stats"]["feature_mean"]
  assert all(np.all(np.isfinite(v)) and np.any(v != 0) for v in new.values())
  # Evaluation subtracts the stored mean before the projectors.
  variables = {**variables, "batch_stats": {"feature_mean": new}}
  config.model.eval_features = "projections"
  got, shared = jax.jit(
    lambda v, b: (infomae.embed(v, b, config), infomae.align(v, b, config))
  )(variables, batch)

  @jax.jit
  def by_parts(params, signals):
    """concat(shared, private) projections of the centred encoder output."""
    out = {}
    for m in config.data.modalities:
      x = parts.prepare_input(signals[m], m, config)
      feat = parts.encoder(config).apply(
        {"params": params[f"encoder_{m}"]}, x, None, train=False
      )[0]
      out[m] = {
        kind: parts.projector(config, kind).apply(
          {"params": params[f"{kind}_{m}"]}, feat - new[m], train=False
        )
        for kind in ("shared", "private")
      }
    return out

  proj = by_parts(variables["params"], batch["signals"])
  for m in config.data.modalities:
    want = np.concatenate([proj[m]["shared"], proj[m]["private"]], axis=-1)
    np.testing.assert_allclose(got[m], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
      shared[m], proj[m]["shared"], rtol=1e-5, atol=1e-6
    )


def test_empty_tokens_option_reaches_the_encoder():
  # SWIN's and FOCAL's default; "masked" leaves all-zero patches out
  # (tests/nn/test_swin_empty_tokens.py checks what it does).
  assert parts.encoder(_config()).empty_tokens == "visible"
  masked = parts.encoder(_config(empty_tokens="masked"))
  assert masked.empty_tokens == "masked"


def _info_nce_reference(u1, u2, tau):
  """Symmetric InfoNCE in float64 NumPy: diagonal positives, mean rows."""
  a = u1 / np.linalg.norm(u1, axis=1, keepdims=True)
  b = u2 / np.linalg.norm(u2, axis=1, keepdims=True)
  s = a @ b.T / tau

  def ce(m):
    m = m - m.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(m).sum(axis=1)) - np.diagonal(m))

  return 0.5 * (ce(s) + ce(s.T))


def test_paired_info_nce_is_info_nce_over_the_paired_rows_alone():
  rng = np.random.default_rng(5)
  u1 = rng.normal(size=(B, 6)).astype(np.float32)
  u2 = rng.normal(size=(B, 6)).astype(np.float32)
  paired = np.array([1, 0, 1, 1, 0, 0, 1, 0], np.float32)
  keep = paired > 0
  got = paired_info_nce(u1, u2, jnp.asarray(paired), 0.2)
  want = _info_nce_reference(
    u1[keep].astype(np.float64), u2[keep].astype(np.float64), 0.2
  )
  assert float(got) == pytest.approx(want, rel=1e-5)
  every = paired_info_nce(u1, u2, jnp.ones(B), 0.2)
  assert float(every) == pytest.approx(
    _info_nce_reference(u1.astype(np.float64), u2.astype(np.float64), 0.2),
    rel=1e-5,
  )
  # Unpaired rows are neither anchors nor negatives: no gradient reaches them.
  g1, g2 = jax.grad(
    lambda a, b: paired_info_nce(a, b, jnp.asarray(paired), 0.2),
    argnums=(0, 1),
  )(jnp.asarray(u1), jnp.asarray(u2))
  assert np.all(np.asarray(g1)[~keep] == 0)
  assert np.all(np.asarray(g2)[~keep] == 0)
  assert np.all(np.abs(np.asarray(g1)[keep]).sum(axis=1) > 0)
  none = paired_info_nce(u1, u2, jnp.zeros(B), 0.2)
  assert float(none) == 0.0


def test_info_nce_alignment_adds_alpha_times_it_to_l_shared(setup):
  """Constant discriminators: L_shared = 6 terms of c + alpha * InfoNCE."""
  config, _, batch, variables, _ = setup
  variables = _constant_discriminators(variables, 0.0)
  shared = {}
  for alpha in (0.0, 1.0, 3.0):
    c = config.copy_and_resolve_references()
    c.loss.alignment = "info_nce"
    c.loss.alpha = alpha
    metrics = infomae.loss_fn(variables, batch, jax.random.key(1), c, 0)[1][1]
    shared[alpha] = float(metrics["loss/shared"])
  assert shared[0.0] == pytest.approx(0.0, abs=1e-6)
  # InfoNCE of B rows is positive and linear in alpha.
  assert shared[1.0] > 0.1
  assert shared[3.0] == pytest.approx(3 * shared[1.0], rel=1e-5)


def test_unknown_alignment_rejected(setup):
  config = setup[0].copy_and_resolve_references()
  config.loss.alignment = "cosine"
  with pytest.raises(ValueError, match="alignment must be one of"):
    parts.check_stage(config)
  config.loss.alignment = "info_nce"
  config.loss.align_tau = 0.0
  with pytest.raises(ValueError, match="align_tau must be > 0"):
    parts.check_stage(config)
