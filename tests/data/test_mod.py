import numpy as np
import pytest

from msjax.data import MissingDataError, make_source
from msjax.data.builders import mod

# run/node -> (audio seconds, seismic seconds)
RUNS = {"Polaris0150pm/rs1": (4.3, 4.1), "walk2/rs3": (2.4, 2.5)}


def _write(root, runs=None):
  for run_node, (audio_s, seismic_s) in (runs or RUNS).items():
    folder = root / run_node
    folder.mkdir(parents=True)
    t = np.arange(int(audio_s * 16_000)) / 16_000
    audio = 100 * np.sin(2 * np.pi * 1000 * t)
    if run_node.startswith("walk"):  # alternate name, extra column
      np.savetxt(
        folder / "aud.csv",
        np.stack([audio, 0 * audio], 1),
        delimiter=",",
        fmt="%.5f",
      )
    else:
      np.savetxt(folder / "aud16000.csv", audio, fmt="%.5f")
    seismic = np.arange(int(seismic_s * 100), dtype=float)
    np.savetxt(
      folder / "ehz.csv",
      np.stack([seismic, seismic + 1], 1),
      delimiter=" ",
      fmt="%.1f",
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  root = tmp_path_factory.mktemp("mod")
  _write(root / "raw")
  c = mod.default_config()
  c.data_dir, c.manual_dir = str(root / "tfds"), str(root / "raw")
  c.runs = tuple(RUNS)
  c.trim = False
  c.test_fraction = 0.5
  return c


def test_windows_spectra_labels_and_split(config):
  train, test = make_source(config, "train"), make_source(config, "test")
  assert train.element_shapes() == {
    "seismic": (2, 20, 10),
    "audio": (2, 1600, 10),
  }
  windows = {r: int(min(a, s) // 2) for r, (a, s) in RUNS.items()}
  assert train.num_examples + test.num_examples == sum(windows.values()) == 3
  assert make_source(config, "val").num_examples == test.num_examples
  both = [s.get(np.arange(s.num_examples)) for s in (train, test)]
  labels = np.concatenate([b["label"] for b in both])
  sessions = np.concatenate([b["session"] for b in both])
  times = np.concatenate([b["time_index"] for b in both])
  keys = sorted(zip(sessions.tolist(), times.tolist(), strict=False))
  assert keys == [(0, 0), (0, 1), (1, 0)]
  assert sorted(labels.tolist()) == [0, 0, 6]  # Polaris 0, walk 6
  assert train.num_classes == 7
  # Seismic window k, interval i: samples 200 k + 20 i + (0..19).
  for b in both:
    for row in range(len(b["label"])):
      k = int(b["time_index"][row])
      spec = b["signals"]["seismic"][row]
      raw = 200 * k + 20 * 3 + np.arange(20.0)
      np.testing.assert_allclose(
        spec[0, :, 3], np.fft.fft(raw).real, rtol=1e-5, atol=1e-2
      )
      np.testing.assert_allclose(
        spec[1, :, 3], np.fft.fft(raw).imag, rtol=1e-5, atol=1e-2
      )
      # 1 kHz tone at 8 kHz: 0.2 s intervals put it in bin 200 (of 1600).
      magnitude = np.hypot(
        b["signals"]["audio"][row][0], b["signals"]["audio"][row][1]
      )
      assert np.argmax(magnitude[:800, 5]) == 200


def test_time_representation_and_run_split(config):
  c = config.copy_and_resolve_references()
  c.representation, c.split_by, c.test_runs = "time", "run", ("walk2/rs3",)
  test = make_source(c, "test")
  assert test.element_shapes() == {"seismic": (1, 200), "audio": (1, 16000)}
  assert test.num_examples == 1
  batch = test.get(np.arange(1))
  assert set(batch["label"].tolist()) == {6}
  t = np.arange(16_000) / 8_000
  for row in range(1):
    k = int(batch["time_index"][row])
    np.testing.assert_allclose(
      batch["signals"]["audio"][row, 0, 1000:-1000],
      100 * np.sin(2 * np.pi * 1000 * (t + 2 * k))[1000:-1000],
      atol=0.5,
    )
  assert make_source(c, "train").num_examples == 2


def test_trim_table_and_labels():
  assert mod.trim_of("motor", "rs3") == (160.0, 65.0)
  assert mod.trim_of("tesla", "rs7") == (90.0, 80.0)
  assert mod.trim_of("Polaris0150pm", "rs1") == (0.0, 0.0)
  assert mod.label_of("Silverado0315pm") == 2
  assert mod.label_of("mustang0528") == 5
  assert mod.label_of("Warhog-NoLineOfSight") == 1


def test_missing(tmp_path):
  c = mod.default_config()
  c.data_dir, c.manual_dir = str(tmp_path / "t"), str(tmp_path)
  with pytest.raises(MissingDataError, match="ehz.csv.*FOCAL"):
    make_source(c, "train")
