import numpy as np
import pytest

from msjax.data import SOURCES, ArraySource, builders, make_source


def test_every_builder_is_a_source_name():
  assert set(builders.BUILDERS) <= set(SOURCES)
  assert set(SOURCES) - set(builders.BUILDERS) == {"synthetic", "npz", "paired"}
  assert set(builders.CONFIGS) == set(builders.BUILDERS)
  for name, make_config in builders.CONFIGS.items():
    assert make_config().source == name


def test_unknown_source_is_one_line():
  class Config:
    source = "imagenet"

  with pytest.raises(ValueError, match="imagenet.*npz"):
    make_source(Config(), "train")


def test_array_source_batches_and_checks():
  x = np.arange(24, dtype=np.float32).reshape(6, 1, 4)
  source = ArraySource(
    {"a": x, "b": 2 * x},
    modalities=("b",),
    label=[0, 1, 2, 0, 1, 2],
    session=[0] * 3 + [1] * 3,
    time_index=[0, 1, 2] * 2,
  )
  assert source.modalities == ("b",) and source.num_classes == 3
  batch = source.get(np.array([4, 1]))
  np.testing.assert_array_equal(batch["signals"]["b"], 2 * x[[4, 1]])
  assert batch["label"].dtype == np.int32 and batch["label"].tolist() == [1, 1]
  assert batch["session"].tolist() == [1, 0]
  assert set(batch) == {"signals", "label", "session", "time_index"}
  sub = source.subset(np.array([5, 0]))
  assert sub.num_examples == 2 and sub.labels().tolist() == [2, 0]
  with pytest.raises(ValueError, match="disagree"):
    ArraySource({"a": x, "b": x[:5]})
  with pytest.raises(ValueError, match="num_classes"):
    ArraySource({"a": x}, label=[0, 1, 2, 3, 4, 5], num_classes=3)
  with pytest.raises(IndexError):
    source.get(np.array([6]))
