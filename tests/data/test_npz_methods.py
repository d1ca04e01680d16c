"""The bring-your-own npz source drives every method's smoke config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax import methods
from msjax.data import make_source, npz, pipeline, signal

N, RATES, SECONDS = 48, {"ppg": 32, "acc": 16}, 2
# Methods whose encoders take spectrograms [B, C, F, N].
SPECTRAL = ("infomae", "mae")


def _write(tmp_path):
  rng = np.random.default_rng(0)
  label = np.arange(N) % 3
  t = {m: np.arange(SECONDS * r) / r for m, r in RATES.items()}
  raw = {
    "ppg": np.sin(2 * np.pi * (1 + label)[:, None, None] * t["ppg"])
    + 0.1 * rng.normal(size=(N, 1, SECONDS * 32)),
    "acc": 0.1 * rng.normal(size=(N, 3, SECONDS * 16)) + label[:, None, None],
  }
  columns = dict(
    label=label,
    subject=np.repeat(np.arange(4), N // 4),
    timestamp=np.tile(np.arange(N // 4) * 2.0, 4),
  )
  npz.save_npz(str(tmp_path / "raw.npz"), raw, **columns)
  spectra = {
    m: signal.stft(x, nfft=16, hop=4, output="real_imag")
    for m, x in raw.items()
  }
  npz.save_npz(str(tmp_path / "stft.npz"), spectra, **columns)
  return {"raw": str(tmp_path / "raw.npz"), "stft": str(tmp_path / "stft.npz")}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  return _write(tmp_path_factory.mktemp("npz"))


def _setup(name, paths):
  """The method, its smoke config on the npz source and a pipeline batch."""
  method = methods.METHODS[name]
  config = method.default_config("tiny")
  config.seed = 0
  kind = "stft" if name in SPECTRAL else "raw"
  config.data = npz.default_config(paths[kind], ("ppg", "acc"))
  source = make_source(config.data, "train")
  assert source.num_examples == 36  # 3 of 4 subjects
  if "num_classes" in config.model:
    config.model.num_classes = source.num_classes
  seq_len = config.loss.get("seq_len", 1)
  sequences = (
    pipeline.sequence_index_for(source, seq_len) if seq_len > 1 else None
  )
  batch = pipeline.batch_at(
    source,
    0,
    batch_size=8,
    seed=0,
    sequences=sequences,
    process_index=0,
    process_count=1,
  )
  if kind == "stft":
    assert batch["signals"]["ppg"].shape == (8, 2, 9, 13)
  if sequences is not None:  # sequence-major runs of consecutive windows
    steps = np.diff(batch["time_index"].reshape(-1, seq_len), axis=1)
    np.testing.assert_array_equal(steps, 1)
  return method, config, batch


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_npz_batches_fit_every_method(name, paths):
  """init, loss_fn and embed trace on npz batches (abstractly: no compile)."""
  method, config, batch = _setup(name, paths)
  key = jax.random.key(0)
  variables = jax.eval_shape(lambda k, b: method.init(k, config, b), key, batch)
  loss, (_, metrics) = jax.eval_shape(
    lambda v, b: method.loss_fn(v, b, key, config, jnp.int32(0)),
    variables,
    batch,
  )
  assert loss.shape == () and loss.dtype == jnp.float32
  assert all(m.shape == () for m in metrics.values())
  out = jax.eval_shape(
    lambda v, b: method.embed(v, b, config), variables, batch
  )
  assert out["fused"].shape[0] == 8


@pytest.mark.slow
def test_npz_source_gives_a_finite_loss(paths):
  """A real (compiled) loss on npz batches is finite."""
  method, config, batch = _setup("supervised_sum", paths)
  key = jax.random.key(0)
  variables = method.init(key, config, batch)
  loss, (_, metrics) = jax.jit(
    lambda v, b: method.loss_fn(v, b, key, config, jnp.int32(0))
  )(variables, batch)
  assert np.isfinite(float(loss))
  assert all(np.isfinite(float(m)) for m in metrics.values())
