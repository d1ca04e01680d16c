"""InfoMAE stage 2's first steps: gradient norm and losses, per model size.

    python experiments/sweeps/infomae_gradients.py --workdir DIR \
        [--size base] [--options suite|spec] [--steps 60] \
        [--config.model.swin.empty_tokens=masked ...]

Trains ``experiments/infomae.py:stage=2`` from scratch on the built-in
data with the ``model`` and ``loss`` sections of
``infomae.default_config(size)`` (``--size experiment`` keeps the
experiment's 64-wide SWIN), logging every step, and prints the gradient
norm and the stage-2 losses at a few steps as a markdown table.
``--options spec`` keeps SPEC's choices (patch LayerNorm, no feature
centring, the input as the reconstruction target, visible empty tokens);
``suite`` applies the claims suite's (docs/claims.md, "InfoMAE"; empty
tokens masked since session 19). Further ``--config.a.b=value``
overrides are applied last. The run's ``metrics.jsonl`` stays in
``DIR``. docs/claims.md, "InfoMAE: empty tokens", was measured with it.
"""

import argparse
import json
import pathlib

from msjax.methods import infomae
from msjax.train import config_lib
from msjax.train.loop import train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHOWN = (1, 2, 5, 10, 20, 30, 60, 100, 200)
COLUMNS = ("grad_norm", "loss/shared", "loss/aug", "loss/rec", "loss/temp")


def config_for(size: str, options: str, steps: int, overrides: list[str]):
  """The stage-2 config of ``size`` with ``options``' model choices."""
  config = config_lib.load_config(str(ROOT / "experiments/infomae.py:stage=2"))
  if size != "experiment":
    config_lib.with_sections(config, infomae.default_config(size))
  if options == "suite":
    config.model.swin.update(infomae.SUITE_SWIN)
    config.model.center_features = True
    config.loss.rec_target = "pair_log_magnitude"
  elif size == "experiment":
    raise SystemExit("--options spec needs --size tiny or base")
  config_lib.apply_overrides(
    config,
    [
      f"train.total_steps={steps}",
      "train.log_every=1",
      "eval.protocol=none",
      f"checkpoint.every_steps={steps}",
      *overrides,
    ],
  )
  return config


def table(workdir: str) -> str:
  """The markdown table of ``workdir/metrics.jsonl`` at :data:`SHOWN`."""
  rows = [
    json.loads(line)
    for line in (pathlib.Path(workdir) / "metrics.jsonl")
    .read_text()
    .splitlines()
  ]
  lines = [
    "| step | " + " | ".join(COLUMNS) + " |",
    "|---" * (len(COLUMNS) + 1) + "|",
  ]
  for row in rows:
    if row.get("step") in SHOWN and "grad_norm" in row:
      cells = [f"{float(row[c]):.3g}" if c in row else "-" for c in COLUMNS]
      lines.append(f"| {row['step']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument(
    "--size", default="base", choices=("tiny", "base", "experiment")
  )
  parser.add_argument("--options", default="suite", choices=("suite", "spec"))
  parser.add_argument("--steps", type=int, default=60)
  args, overrides = parser.parse_known_args()
  config = config_for(args.size, args.options, args.steps, overrides)
  train_and_evaluate(config, args.workdir)
  print(table(args.workdir))


if __name__ == "__main__":
  main()
