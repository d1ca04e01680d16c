import numpy as np
import pytest

from msjax.data import make_source, pairing_config, pipeline, synthetic
from msjax.train import config_lib, sharding
from msjax.train.errors import DataError
from msjax.train.feed import BatchFeed
from msjax.train.loop import config_differences
from tests.train import toy


def _feed(prefetch):
  config = toy.get_config()
  config_lib.apply_overrides(config, [f"data.prefetch={prefetch}"])
  source = toy.make_source(config.data, "train")
  return BatchFeed(source, config, sharding.make_mesh(config.train.mesh))


def test_steps_in_any_order_give_the_batches_of_the_step():
  in_order, jumping = _feed(prefetch=2), _feed(prefetch=0)
  want = {step: np.asarray(in_order(step)["signals"]["a"]) for step in range(6)}
  in_order.close()
  for step in (4, 5, 1, 2, 0, 3):  # restarts the iterator at 4, 1 and 0
    got = np.asarray(jumping(step)["signals"]["a"])
    np.testing.assert_array_equal(got, want[step])
  jumping.close()
  config = toy.get_config()
  source = toy.make_source(config.data, "train")
  for step in range(6):
    expected = pipeline.batch_at(
      source, step, batch_size=config.train.batch_size, seed=config.seed
    )
    np.testing.assert_array_equal(want[step], expected["signals"]["a"])


def test_a_run_resumes_with_other_reader_settings():
  saved = toy.get_config()
  config = toy.get_config()
  config_lib.apply_overrides(config, ["data.num_workers=3", "data.prefetch=0"])
  assert config_differences(saved.to_dict(), config.to_dict()) == []
  config_lib.apply_overrides(config, ["data.num_examples=32"])
  assert config_differences(saved.to_dict(), config.to_dict()) == [
    "data.num_examples: 64 -> 32"
  ]


def test_sequences_from_a_pair_ratio_source_need_runs():
  config = toy.get_config()
  config.train.sequence_length = 4
  config.train.batch_size = 8
  mesh = sharding.make_mesh(config.train.mesh)
  base = synthetic.default_config(smoke=True)
  scattered = pairing_config(base, pair_ratio=0.25, unpaired="all")
  config.data = scattered
  with pytest.raises(DataError, match=r"needs data.block >= it \(got 1\)"):
    BatchFeed(make_source(scattered, "train"), config, mesh)
  runs = pairing_config(base, pair_ratio=0.25, unpaired="all", block=4)
  config.data = runs
  source = make_source(runs, "train")
  feed = BatchFeed(source, config, mesh)
  for step in range(4):
    batch = feed(step)
    paired = np.asarray(batch["paired"]).reshape(2, 4)
    assert (paired == paired[:, :1]).all()  # whole runs paired or not
    session = np.asarray(batch["session"]).reshape(2, 4)
    time = np.asarray(batch["time_index"]).reshape(2, 4)
    assert (session == session[:, :1]).all()
    assert (np.diff(time, axis=1) == 1).all()
  feed.close()
