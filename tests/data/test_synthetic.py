"""Tests of the synthetic multimodal dataset (msjax.data.synthetic)."""

import numpy as np
import pytest

from msjax.data import synthetic
from msjax.evaluation.probes import linear_probe


def _band_log_powers(x: np.ndarray, rate: float, edges: np.ndarray):
  """[N, C, T] -> [N, C * bands] log power in each frequency band."""
  x = x - x.mean(-1, keepdims=True)
  spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2
  freqs = np.fft.rfftfreq(x.shape[-1], 1 / rate)
  bands = [
    spec[..., (freqs >= lo) & (freqs < hi)].sum(-1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True)
  ]
  return np.log(np.stack(bands, -1) + 1e-6).reshape(x.shape[0], -1)


def _ppg_features(x: np.ndarray, rate: float) -> np.ndarray:
  """Pulse-rate band powers plus waveform skewness/kurtosis."""
  sig = x[:, 0]
  z = (sig - sig.mean(1, keepdims=True)) / sig.std(1, keepdims=True)
  slope = np.diff(sig, axis=1)
  dz = (slope - slope.mean(1, keepdims=True)) / slope.std(1, keepdims=True)
  shape = np.stack([(z**3).mean(1), (z**4).mean(1), (dz**3).mean(1)], 1)
  return np.concatenate(
    [_band_log_powers(x, rate, np.arange(0.5, 6.01, 0.25)), shape], 1
  )


def _acc_features(x: np.ndarray, rate: float) -> np.ndarray:
  """Per-axis means/stds and band powers of each axis and the magnitude."""
  edges = np.arange(0.25, 6.01, 0.5)
  magnitude = np.linalg.norm(x, axis=1, keepdims=True)
  return np.concatenate(
    [
      x.mean(-1),
      x.std(-1),
      _band_log_powers(magnitude, rate, edges),
      _band_log_powers(x, rate, edges),
    ],
    1,
  )


_FEATURES = {"ppg": _ppg_features, "acc": _acc_features}


def _features(source: synthetic.SyntheticSource, config, modality: str):
  rows = np.arange(source.num_examples)
  windows = source.get(rows)["signals"][modality]
  return _FEATURES[modality](windows, config.sample_rate_hz[modality])


@pytest.fixture(scope="module")
def default_splits():
  config = synthetic.default_config()
  train = synthetic.SyntheticSource(config, "train")
  test = synthetic.SyntheticSource(config, "test")
  feats = {
    m: (_features(train, config, m), _features(test, config, m))
    for m in ("ppg", "acc")
  }
  feats["both"] = tuple(
    np.concatenate([feats["ppg"][i], feats["acc"][i]], 1) for i in range(2)
  )
  return train, test, feats


def _probe_accuracy(splits, features: str, task: str) -> tuple[float, float]:
  """(test accuracy, majority-class rate of the test labels)."""
  train, test, feats = splits
  train_x, test_x = feats[features]
  result = linear_probe(
    train_x,
    train.labels(task),
    test_x,
    test.labels(task),
    num_classes=synthetic.TASKS[task],
    l2=1e-2,
  )
  majority = np.bincount(test.labels(task)).max() / test.num_examples
  return result.metrics["accuracy"], majority


def test_private_and_shared_labels_acceptance(default_splits):
  """Private label: own modality yes, other near chance; shared: either."""
  acc = {
    (f, t): _probe_accuracy(default_splits, f, t)
    for f in ("ppg", "acc", "both")
    for t in synthetic.TASKS
  }
  # Shared factor from either modality, well above the majority rate.
  for modality in ("ppg", "acc"):
    value, majority = acc[(modality, "shared")]
    assert value >= 0.72 and value >= majority + 0.3, (modality, value)
  # Private factors: predictable from their own modality...
  assert acc[("ppg", "private_ppg")][0] >= 0.78
  assert acc[("acc", "private_acc")][0] >= 0.75
  # ...and near chance (majority rate) from the other one.
  for key in (("acc", "private_ppg"), ("ppg", "private_acc")):
    value, majority = acc[key]
    assert value <= majority + 0.06, (key, value, majority)
  # The combined label needs both modalities.
  both = acc[("both", "combined")][0]
  assert both >= max(acc[("ppg", "combined")][0], acc[("acc", "combined")][0])
  assert both >= acc[("acc", "combined")][0] + 0.15
  assert both >= 0.6


def test_dominance_zero_hides_shared_factor_from_that_modality():
  config = synthetic.default_config()
  config.num_sessions, config.windows_per_session = 12, 48
  config.dominance["acc"] = 0.0
  data = synthetic.generate(config)
  acc = data["signals"]["acc"]
  level = data["labels"]["shared"]
  # Motion energy per exertion level: equal up to noise when dominance is 0.
  energy = acc.std(-1).mean(-1)
  means = [energy[level == k].mean() for k in range(3)]
  assert max(means) / min(means) < 1.15
  # PPG still carries it: mean latent heart rate rises with the level.
  hr = data["latents"]["heart_rate_hz"]
  hr_means = [hr[level == k].mean() for k in range(3)]
  assert hr_means[0] + 0.3 < hr_means[1] < hr_means[2] - 0.3
  config.dominance["acc"] = 1.0
  energy = synthetic.generate(config)["signals"]["acc"].std(-1).mean(-1)
  assert energy[level == 2].mean() > 3 * energy[level == 0].mean()


def test_shapes_dtypes_and_source_protocol():
  config = synthetic.default_config(smoke=True)
  source = synthetic.SyntheticSource(config, "train")
  assert source.modalities == ("ppg", "acc")
  assert source.num_classes == 3
  shapes = source.element_shapes()
  assert shapes == {"ppg": (1, 128), "acc": (3, 64)}
  batch = source.get(np.array([0, 3, 1]))
  for m in source.modalities:
    assert batch["signals"][m].shape == (3, *shapes[m])
    assert batch["signals"][m].dtype == np.float32
    assert np.all(np.isfinite(batch["signals"][m]))
  for k in ("label", "session", "time_index"):
    assert batch[k].shape == (3,) and batch[k].dtype == np.int32
  with pytest.raises(ValueError, match="indices"):
    source.get(np.array([source.num_examples]))


def test_configurable_rates_and_window_length():
  config = synthetic.default_config(smoke=True)
  config.sample_rate_hz = {"ppg": 50, "acc": 25}
  config.window_s = 3.0
  config.windows_per_session = 5
  config.modalities = ("acc",)
  data = synthetic.generate(config)
  assert set(data["signals"]) == {"acc"}
  assert data["signals"]["acc"].shape == (4 * 5, 3, 75)
  config.window_s = 3.01
  with pytest.raises(ValueError, match="window_s"):
    synthetic.generate(config)


@pytest.mark.parametrize(
  ("key", "value", "match"),
  [
    ("task", "stress", "task"),
    ("modalities", ("ppg", "eeg"), "modalities"),
    ("persistence", 1.0, "persistence"),
    ("test_fraction", 0.0, "test_fraction"),
    ("representation", "mel", "representation"),
  ],
)
def test_bad_config_rejected(key, value, match):
  config = synthetic.default_config(smoke=True)
  config[key] = value
  with pytest.raises(ValueError, match=match):
    synthetic.generate(config)


def test_deterministic_per_seed():
  config = synthetic.default_config(smoke=True)
  first, second = synthetic.generate(config), synthetic.generate(config)
  for m in config.modalities:
    np.testing.assert_array_equal(first["signals"][m], second["signals"][m])
  for task in synthetic.TASKS:
    np.testing.assert_array_equal(first["labels"][task], second["labels"][task])
  config.seed = 1
  other = synthetic.generate(config)
  for m in config.modalities:
    assert np.mean(first["signals"][m] != other["signals"][m]) > 0.99
  assert np.any(first["labels"]["combined"] != other["labels"]["combined"])
  # Latent states do not depend on which modalities are generated.
  config.modalities = ("acc",)
  np.testing.assert_array_equal(
    synthetic.generate(config)["labels"]["combined"],
    other["labels"]["combined"],
  )


def test_consecutive_windows_are_temporally_close():
  config = synthetic.default_config(smoke=True)
  config.num_sessions, config.windows_per_session = 8, 64
  config.noise_std = {"ppg": 0.0, "acc": 0.0}
  data = synthetic.generate(config)
  same_session = data["session"][1:] == data["session"][:-1]
  assert np.all(np.diff(data["time_index"])[same_session] == 1)
  for name in ("exertion", "stress", "posture"):
    state = data["latents"][name]
    kept = np.mean(state[1:][same_session] == state[:-1][same_session])
    assert kept >= 0.8, name
  # One continuous stream: the jump across a window boundary is like a
  # within-window step, much smaller than between random windows.
  acc = data["signals"]["acc"][:, 2]
  boundary = np.abs(acc[1:, 0] - acc[:-1, -1])[same_session].mean()
  within = np.abs(np.diff(acc, axis=1)).mean()
  unrelated = np.abs(acc[::-1, 0] - acc[:, -1]).mean()
  assert boundary < 2 * within
  assert boundary < 0.5 * unrelated


def test_splits_are_disjoint_by_session_and_cover_everything():
  config = synthetic.default_config(smoke=True)
  config.num_sessions = 8
  sources = {
    s: synthetic.SyntheticSource(config, s) for s in ("train", "test", "all")
  }
  rows = {s: src.get(np.arange(src.num_examples)) for s, src in sources.items()}
  train_s, test_s = set(rows["train"]["session"]), set(rows["test"]["session"])
  assert not train_s & test_s
  assert train_s | test_s == set(range(8))
  assert len(test_s) == 2  # test_fraction 0.25 of 8
  assert (
    sources["train"].num_examples + sources["test"].num_examples
    == sources["all"].num_examples
  )
  # Session-major order, time_index increasing inside each session.
  for split in ("train", "test"):
    key = rows[split]["session"] * 1000 + rows[split]["time_index"]
    assert np.all(np.diff(key) > 0)
  with pytest.raises(ValueError, match="split"):
    synthetic.SyntheticSource(config, "val")


def test_task_labels_follow_latents():
  config = synthetic.default_config(smoke=True)
  config.task = "combined"
  source = synthetic.SyntheticSource(config, "all")
  lat = source.latents()
  np.testing.assert_array_equal(
    source.labels(), lat["stress"] * 3 + lat["posture"]
  )
  np.testing.assert_array_equal(source.labels("shared"), lat["exertion"])
  assert source.num_classes == 6
  assert (
    source.get(np.arange(4))["label"].tolist() == source.labels()[:4].tolist()
  )


def test_stft_representation_matches_direct_fft():
  config = synthetic.default_config(smoke=True)
  raw = synthetic.generate(config)["signals"]
  config.representation = "stft"
  spec = synthetic.generate(config)["signals"]
  # ppg: 64 Hz, 1 s segments, 0.5 s hop over 2 s windows -> F=33, 3 frames.
  assert spec["ppg"].shape == (64, 2, 33, 3)
  assert spec["acc"].shape == (64, 6, 17, 3)
  n = np.arange(32)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 32)
  frame = raw["acc"][5, 1, 16:48]  # axis 1, frame 1 (hop 16 samples)
  expected = np.fft.rfft(frame * hann)
  np.testing.assert_allclose(spec["acc"][5, 2, :, 1], expected.real, atol=1e-4)
  np.testing.assert_allclose(spec["acc"][5, 3, :, 1], expected.imag, atol=1e-4)
  config.stft.output = "magnitude"
  mag = synthetic.generate(config)["signals"]["ppg"]
  assert mag.shape == (64, 1, 33, 3)
  np.testing.assert_allclose(
    mag[:, 0],
    np.hypot(spec["ppg"][:, 0], spec["ppg"][:, 1]),
    rtol=1e-5,
    atol=1e-5,
  )


def test_noise_knob_sets_white_noise_level_per_modality():
  config = synthetic.default_config(smoke=True)
  config.noise_std = {"ppg": 0.0, "acc": 0.0}
  clean = synthetic.generate(config)["signals"]
  config.noise_std = {"ppg": 0.5, "acc": 0.0}
  noisy = synthetic.generate(config)["signals"]
  residual = noisy["ppg"] - clean["ppg"]
  assert abs(residual.std() - 0.5) < 0.02
  assert abs(residual.mean()) < 0.02
  np.testing.assert_array_equal(noisy["acc"], clean["acc"])


def test_subset_is_the_same_rows_as_an_array_source():
  config = synthetic.default_config(smoke=True)
  source = synthetic.SyntheticSource(config, "train")
  rows = np.array([5, 0, 17, 3])
  sub = source.subset(rows)
  want, got = source.get(rows), sub.get(np.arange(4))
  for m in config.modalities:
    np.testing.assert_array_equal(got["signals"][m], want["signals"][m])
  for key in ("label", "session", "time_index"):
    np.testing.assert_array_equal(got[key], want[key])
  assert sub.num_examples == 4 and sub.num_classes == source.num_classes
