"""Trains the toy method through an array_record dataset; reports peak RSS.

    python -m tests.data.rss_worker <warm_dir> <data_dir> <workdir> \
        <workers> <records>

Runs with ``data.num_workers`` (0: reading in this process's threads). A
warm-up run of the same config on a small dataset (`WARM` records, in
`warm_dir`) first loads, compiles and initialises everything a run needs;
then the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``), the resident bytes noted and one epoch trained in
a new workdir. Prints one JSON line: ``rss_start`` (those bytes), ``rss_peak``
(the peak resident bytes since, ``VmHWM``), ``steps`` and ``records`` read by
the epoch run. The dataset is written by
`prepare(data_dir, num_records)` (`NoiseBuilder`, 128 KiB per record).
"""

import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from msjax.data import builders  # noqa: E402
from msjax.data.records import RecordSource  # noqa: E402

SHAPE = (2, 8192)  # float32: 64 KiB per modality and record
RECORD_BYTES = 2 * 4 * SHAPE[0] * SHAPE[1]
BATCH = 32
WARM = 64  # records of the warm-up dataset


class NoiseBuilder(builders.WindowBuilder):
  """Seeded noise windows with two modalities and three classes."""

  name = "rss_noise"
  SIGNAL_ENCODING = tfds.features.Encoding.BYTES

  def modality_shapes(self):
    return {"a": SHAPE, "b": SHAPE}

  def class_names(self):
    return ["0", "1", "2"]

  def missing_files(self):
    return []

  def split_examples(self):
    num = int(self.options["num_records"])
    ramp = np.linspace(-1, 1, SHAPE[0] * SHAPE[1], dtype=np.float32)
    ramp = ramp.reshape(SHAPE)

    def examples():
      for i in range(num):
        yield {
          "signals": {
            m: np.full(SHAPE, i % 7, np.float32) + ramp for m in ("a", "b")
          },
          "label": i % 3,
          "session": i // 64,
          "time_index": i % 64,
        }

    return {"train": examples()}


def builder(data_dir, num_records):
  return NoiseBuilder(
    options={"num_records": num_records}, data_dir=data_dir, manual_dir=data_dir
  )


def prepare(data_dir, num_records):
  """Writes the dataset (once); returns its size on disk in bytes."""
  os.makedirs(data_dir, exist_ok=True)
  built = builders.prepare(builder(data_dir, num_records))
  return sum(
    os.path.getsize(os.path.join(root, f))
    for root, _, files in os.walk(built.data_dir)
    for f in files
    if "array_record" in f
  )


def _status(key):
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1]) * 1024
  raise KeyError(key)


def _config(num_workers, steps):
  from msjax.train import config_lib
  from tests.train import toy

  config = toy.get_config()
  with config.unlocked():
    config.data = ml_collections.ConfigDict(
      dict(
        source="rss_noise",
        modalities=("a", "b"),
        num_workers=num_workers,
        prefetch=2,
      )
    )
  config_lib.apply_overrides(
    config,
    [
      f"train.batch_size={BATCH}",
      f"train.total_steps={steps}",
      f"train.log_every={steps}",
      f"checkpoint.every_steps={steps}",
      "eval.at_end=false",
      "train.progress=off",
    ],
  )
  return config


def main():
  warm_dir, data_dir, workdir = sys.argv[1:4]
  num_workers, num_records = int(sys.argv[4]), int(sys.argv[5])
  from msjax.train.loop import train_and_evaluate
  from tests.train import toy

  reads = []  # records per get

  def make_source(data_config, split):
    records = num_records if data_config.source == "rss_noise" else WARM
    directory = data_dir if records == num_records else warm_dir
    source = RecordSource(builder(directory, records), split, ("a", "b"))
    get = source.get

    def counting_get(indices):
      reads.append(len(indices))
      return get(indices)

    source.get = counting_get
    return source

  steps = num_records // BATCH

  def train(source, name):
    config = _config(num_workers, steps)
    with config.unlocked():
      config.data.source = source
    train_and_evaluate(
      config,
      os.path.join(workdir, name),
      method=toy.METHOD,
      make_source=make_source,
    )

  train("rss_noise_warm_up", "warm-up")
  train("rss_noise_warm_up", "warm-up-2")
  reads.clear()
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # peak RSS := current RSS
  rss_start = _status("VmRSS")
  train("rss_noise", "epoch")
  print(
    json.dumps(
      dict(
        rss_start=rss_start,
        rss_peak=_status("VmHWM"),
        steps=steps,
        records=sum(reads),
      )
    )
  )


if __name__ == "__main__":
  main()
