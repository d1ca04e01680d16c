"""The ``msjax`` command: parses arguments, calls :mod:`msjax.train`.

    msjax train --config experiments/<name>.py[:arg] --workdir DIR \
        [--config.a.b=value ...]
    msjax eval --workdir DIR
    msjax report DIR

User mistakes (unknown config keys, missing or bad data, a diverged run) are
printed as one line ``msjax: error: ...`` with exit status 2.

Before JAX starts, ``MSJAX_HOST_MALLOC=reuse`` or ``single_arena`` sets glibc
malloc to keep and reuse freed memory (:mod:`msjax.host_memory`; unset: glibc's
defaults).
"""

import argparse
import sys
from collections.abc import Sequence

from msjax import host_memory

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  """Parses the command line; ``--config.a.b=value`` items are returned apart.

  Args:
    argv: the arguments without the program name.

  Returns:
    ``(namespace, overrides)``.
  """
  parser = argparse.ArgumentParser(
    prog="msjax", description=__doc__.split("\n")[0]
  )
  commands = parser.add_subparsers(dest="command", required=True)
  train = commands.add_parser("train", help="train, resume, evaluate")
  train.add_argument("--config", required=True, help="experiments/x.py[:arg]")
  train.add_argument("--workdir", required=True)
  evaluate = commands.add_parser("eval", help="evaluate a workdir")
  evaluate.add_argument("--workdir", required=True)
  report = commands.add_parser("report", help="plots and summary of a workdir")
  report.add_argument("workdir")
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  namespace = parser.parse_args(rest)
  if overrides and namespace.command != "train":
    parser.error("--config.* overrides are accepted by 'train' only")
  return namespace, overrides


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status."""
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    host_memory.configure_from_env()
  except ValueError as error:
    print(f"msjax: error: {error}", file=sys.stderr)
    return 2
  from msjax import train  # noqa: PLC0415 (fast --help)

  try:
    if args.command == "train":
      config = train.load_config(args.config, overrides)
      outcome = train.train_and_evaluate(config, args.workdir)
      if outcome["eval"] is not None:
        print(train.format_results(outcome["eval"]))
    elif args.command == "eval":
      print(train.format_results(train.evaluate(args.workdir)))
    else:
      for path in train.report(args.workdir):
        print(path)
  except train.MsjaxError as error:
    print(f"msjax: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
