"""One process of the two-process test: python -m ... <port> <id> <workdir>.

Two CPU devices per process, gloo collectives, the toy method.
"""

import os
import sys

# Two devices; the other flags (the suite's optimisation level) are kept.
_FLAGS = [
  flag
  for flag in os.environ.get("XLA_FLAGS", "").split()
  if "xla_force_host_platform_device_count" not in flag
]
os.environ["XLA_FLAGS"] = " ".join(
  [*_FLAGS, "--xla_force_host_platform_device_count=2"]
)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

from msjax.train import config_lib  # noqa: E402
from msjax.train.loop import train_and_evaluate  # noqa: E402
from tests.train import toy  # noqa: E402


def main() -> None:
  port, process_id, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  jax.config.update("jax_default_matmul_precision", "highest")
  config = toy.get_config()
  config_lib.apply_overrides(
    config,
    [
      "train.distributed.enabled=true",
      f"train.distributed.coordinator_address=localhost:{port}",
      "train.distributed.num_processes=2",
      f"train.distributed.process_id={process_id}",
      "train.total_steps=3",
      "checkpoint.every_steps=3",
      "eval.at_end=false",
    ],
  )
  train_and_evaluate(config, workdir, method=toy, make_source=toy.make_source)
  assert jax.process_count() == 2 and jax.device_count() == 4
  print(f"process {process_id} done", flush=True)


if __name__ == "__main__":
  main()
