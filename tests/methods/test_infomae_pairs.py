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

B = 8


def _config(**model):
  data = synthetic.default_config(smoke=True)
  data.representation = "stft"
  data.stft.output = "real_imag"
  c = ml_collections.ConfigDict(
    dict(data=data, **infomae.default_config("tiny"))
  )
  c.loss.seq_len = 1
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
