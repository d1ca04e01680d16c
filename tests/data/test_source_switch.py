"""Switching an experiment's data source with command-line overrides."""

import numpy as np
import pytest

from msjax.data import make_source, npz
from msjax.train import config_lib
from msjax.train.errors import ConfigError

SPEC = "experiments/protomm.py:smoke"


def _write(path, n=24):
  rng = np.random.default_rng(0)
  signals = {
    "ppg": rng.normal(size=(n, 1, 32)),
    "acc": rng.normal(size=(n, 3, 16)),
  }
  npz.save_npz(
    path,
    signals,
    label=np.arange(n) % 3,
    subject=np.repeat([1, 2, 3, 4], n // 4),
    timestamp=np.tile(np.arange(n // 4), 4),
  )
  return signals


@pytest.mark.parametrize("source_first", [True, False])
def test_an_override_switches_the_synthetic_config_to_npz(
  tmp_path, source_first
):
  path = str(tmp_path / "w.npz")
  signals = _write(path)
  items = ["data.source=npz", f"data.path={path}", "data.split_by=example"]
  items += ["data.prefetch=5"]
  if not source_first:  # the switch applies first whatever the order
    items = items[1:] + items[:1]
  config = config_lib.load_config(SPEC, [f"--config.{o}" for o in items])
  data = config.data
  assert data.source == "npz" and data.path == path
  assert tuple(data.modalities) == ("ppg", "acc")  # carried over
  assert data.prefetch == 5 and "num_sessions" not in data
  train, test = make_source(data, "train"), make_source(data, "test")
  assert train.num_examples + test.num_examples == 24
  # The two splits hold exactly the file's windows.
  rows = [
    r.tobytes()
    for src in (train, test)
    for r in src.get(np.arange(src.num_examples))["signals"]["acc"]
  ]
  want = [r.tobytes() for r in signals["acc"].astype(np.float32)]
  assert sorted(rows) == sorted(want)
  with pytest.raises(ConfigError, match="unknown config key"):
    config_lib.apply_overrides(config, ["data.num_sessions=3"])


def test_an_override_sets_a_pair_ratio_on_the_current_source():
  overrides = [
    "data.source=paired",
    "data.pair_ratio=0.25",
    "data.subset=paired",
  ]
  config = config_lib.load_config(SPEC, overrides)
  plain = config_lib.load_config(SPEC)
  assert config.data.base.to_dict() == plain.data.to_dict()
  full = make_source(plain.data, "train")
  paired = make_source(config.data, "train")
  assert paired.num_examples == round(0.25 * full.num_examples)
  again = config_lib.load_config(SPEC, overrides + ["data.base.source=npz"])
  assert again.data.source == "paired" and again.data.base.source == "npz"


def test_an_unknown_source_is_one_line():
  with pytest.raises(ConfigError, match="data source 'imagenet' unknown"):
    config_lib.load_config(SPEC, ["data.source=imagenet"])
