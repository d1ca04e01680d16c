"""One process of the multi-process tests.

    python -m tests.train.multiprocess_worker explicit <port> <id> <workdir>
    python -m tests.train.multiprocess_worker auto <workdir>

``explicit`` passes coordinator, process count and id as config overrides;
``auto`` sets only ``train.distributed.enabled=true`` and leaves the rest to
the cluster environment (the test sets SLURM variables). Two CPU devices per
process, gloo collectives, the toy method. A user error (``MsjaxError``) is
printed as one line ``msjax: error: ...`` with exit status 2, as by the
``msjax`` command.
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
from msjax.train.errors import MsjaxError  # noqa: E402
from msjax.train.loop import train_and_evaluate  # noqa: E402
from tests.train import toy  # noqa: E402

COMMON = [
  "train.total_steps=3",
  "checkpoint.every_steps=3",
  "eval.at_end=false",
]


def main() -> int:
  mode = sys.argv[1]
  if mode == "explicit":
    port, process_id, workdir = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    distributed = [
      f"train.distributed.coordinator_address=localhost:{port}",
      "train.distributed.num_processes=2",
      f"train.distributed.process_id={process_id}",
    ]
  else:
    workdir, distributed = sys.argv[2], []
  jax.config.update("jax_default_matmul_precision", "highest")
  config = toy.get_config()
  config_lib.apply_overrides(
    config, ["train.distributed.enabled=true", *distributed, *COMMON]
  )
  try:
    train_and_evaluate(
      config, workdir, method=toy.METHOD, make_source=toy.make_source
    )
  except MsjaxError as error:
    print(f"msjax: error: {error}", file=sys.stderr, flush=True)
    return 2
  assert jax.process_count() == 2 and jax.device_count() == 4
  print(f"process {jax.process_index()} done", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
