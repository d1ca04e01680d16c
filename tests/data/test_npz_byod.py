"""Bring-your-own data: named held-out subjects, spectrograms, pair ratios."""

import numpy as np
import pytest

from msjax.data import make_source, npz, pairs

RATE = 32


@pytest.fixture(scope="module")
def path(tmp_path_factory):
  rng = np.random.default_rng(0)
  n, t = 60, 4 * RATE
  subject = np.repeat(np.arange(6) + 100, 10)  # ids as a study would store them
  time = np.arange(t) / RATE
  freq = np.where(np.arange(n) % 2 == 0, 2.0, 6.0)  # the label: 2 Hz or 6 Hz
  wave = np.sin(2 * np.pi * freq[:, None] * time[None])
  acc = np.stack([wave, 0.5 * wave, rng.normal(0, 0.1, (n, t))], 1)
  ppg = wave[:, None] + rng.normal(0, 0.1, (n, 1, t))
  file = tmp_path_factory.mktemp("byod") / "study.npz"
  npz.save_npz(
    str(file),
    {"acc": acc.astype(np.float32), "ppg": ppg.astype(np.float32)},
    label=(np.arange(n) % 2).astype(np.int64),
    subject=subject,
    timestamp=np.tile(np.arange(10), 6).astype(np.float64),
  )
  return str(file)


def _config(path, **overrides):
  c = npz.default_config(path, ("ppg", "acc"))
  for key, value in overrides.items():
    c[key] = value
  return c


def test_named_test_subjects_are_exactly_the_test_split(path):
  c = _config(path, test_subjects=(101, 104))
  train, test = make_source(c, "train"), make_source(c, "test")
  assert set(np.unique(test.metadata()["session"])) == {101, 104}
  assert set(np.unique(train.metadata()["session"])) == {100, 102, 103, 105}
  assert train.num_examples + test.num_examples == 60
  with pytest.raises(ValueError, match=r"test_subjects \[7\] are not subjects"):
    make_source(_config(path, test_subjects=(7,)), "test")


def test_stft_representation_matches_signal_stft_and_finds_the_tone(path):
  c = _config(
    path, representation="stft", sample_rate_hz={"ppg": RATE, "acc": RATE}
  )
  c.stft.segment_s, c.stft.hop_s, c.stft.output = 1.0, 0.5, "real_imag"
  source = make_source(c, "train")
  batch = source.get(np.arange(4))
  acc = batch["signals"]["acc"]
  assert acc.shape == (4, 6, RATE // 2 + 1, 7)  # 2C channels, F bins, frames
  magnitude = np.hypot(acc[:, 0], acc[:, 1]).mean(-1)  # channel 0, [B, F]
  peak_hz = np.argmax(magnitude, -1) * RATE / RATE  # 1 Hz per bin at 1 s frames
  labels = batch["label"]
  np.testing.assert_array_equal(peak_hz, np.where(labels == 0, 2, 6))
  with pytest.raises(ValueError, match=r"sample_rate_hz\['ppg'\]"):
    make_source(
      _config(path, representation="stft", sample_rate_hz={"acc": RATE}),
      "train",
    )


def test_pair_ratio_over_npz_marks_synchronized_rows(path):
  c = _config(
    path, representation="stft", sample_rate_hz={"ppg": RATE, "acc": RATE}
  )
  data = pairs.pairing_config(c, pair_ratio=0.25, subset="mixed")
  source = make_source(data, "train")
  batch = source.get(np.arange(source.num_examples))
  paired = batch["paired"]
  assert paired.dtype == bool and 0 < paired.sum() < len(paired)
  assert np.all(batch["label"][~paired] == -1)
  assert batch["signals"]["ppg"].shape[1:] == (2, RATE // 2 + 1, 7)


def test_byod_experiment_runs_infomae_stages_with_a_pair_ratio(
  tmp_path, capsys
):
  from msjax import cli
  from msjax.data import synthetic

  c = synthetic.default_config(smoke=True)
  c.num_sessions = 6
  train, test = (synthetic.SyntheticSource(c, s) for s in ("train", "test"))
  parts = [s.get(np.arange(s.num_examples)) for s in (train, test)]
  file = tmp_path / "study.npz"
  npz.save_npz(
    str(file),
    {
      m: np.concatenate([p["signals"][m] for p in parts])
      for m in ("ppg", "acc")
    },
    label=np.concatenate([p["label"] for p in parts]),
    subject=np.concatenate([p["session"] for p in parts]) + 10,
    time_index=np.concatenate([p["time_index"] for p in parts]),
  )
  spec = (
    f"experiments/byod.py:method=infomae,path={file},modalities=ppg+acc,"
    "rates=64+32,test_subjects=11,smoke"
  )
  root = __import__("pathlib").Path(__file__).resolve().parents[2]
  spec = str(root / spec)
  s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
  # Neither the random-encoder rows (they recompile InfoMAE's init: 11 s of
  # the test's 70), the model's depth nor the mesh (one device: the suite's
  # 8 simulated ones cost 16% here) is what the byod path changes.
  small = [
    "--config.eval.random_baseline=false",
    "--config.train.mesh.data=1",
    "--config.model.swin.depths=(1,)",
    "--config.model.disc.num_layers=2",
  ]
  # Stage 1 is only the start of stage 2 here (the byod probe is stage 2's).
  stage1 = ["--config.eval.at_end=false"]
  assert (
    cli.main(
      ["train", "--config", spec + ",stage=1", "--workdir", s1, *small, *stage1]
    )
    == 0
  )
  assert (
    cli.main(
      [
        "train",
        "--config",
        spec + ",stage=2,pair_ratio=0.25,seq_len=4,pair_share=0.5",
        "--workdir",
        s2,
        f"--config.train.init_from={s1}",
        *small,
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert out.count("raw input: the same probe") == 1
  import json

  saved = json.loads((tmp_path / "s2" / "config.json").read_text())
  assert (
    saved["data"]["source"] == "paired" and saved["data"]["pair_ratio"] == 0.25
  )
  assert saved["data"]["base"]["test_subjects"] == [11]
  # The temporal term on pair-ratio data: pairs and unpaired rows in runs.
  assert saved["data"]["block"] == saved["loss"]["seq_len"] == 4
  assert saved["train"]["sequence_length"] == 4
  assert saved["data"]["pair_share"] == 0.5
  rows = (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()
  temp = [json.loads(r)["loss/temp"] for r in rows if "loss/temp" in r]
  assert temp and all(t > 0 for t in temp)
  assert saved["data"]["base"]["representation"] == "stft"
