"""The ``msjax`` command: parses arguments, calls :mod:`msjax.train`.

    msjax train --config experiments/<name>.py[:arg] --workdir DIR \
        [--config.a.b=value ...] [--restart]
    msjax eval --workdir DIR
    msjax report DIR
    msjax claims --paper {protomm,infomae,promobal,all}[,...] --workdir DIR \
        [--seeds N] [--budget default|smoke] [--settings default,skewed] \
        [--runs a,b] [--lr-grid [--grid-seeds 100,101,102]]

User mistakes (unknown config keys, missing or bad data, a diverged run, a
workdir of another config) are printed as one line ``msjax: error: ...`` with
exit status 2.

Before JAX starts, ``MSJAX_HOST_MALLOC=reuse`` or ``single_arena`` sets glibc
malloc to keep and reuse freed memory (:mod:`msjax.host_memory`; unset: glibc's
defaults). ``train``, ``eval`` and ``claims`` keep compiled programs in JAX's
persistent cache (:mod:`msjax.compile_cache`; ``--compile-cache DIR``,
``--no-compile-cache``), so a second run or a resume skips most compiling.
"""

import argparse
import sys
from collections.abc import Sequence

from msjax import compile_cache, host_memory

__all__ = ["main", "parse_args"]

_DESCRIPTION = """Train, evaluate and report multimodal sensing
representation-learning runs (ProtoMM, ProMoBal, InfoMAE and baselines)."""
_EPILOG = """commands:
  msjax train --config experiments/<name>.py[:arg] --workdir DIR \\
      [--config.a.b=value ...] [--restart]
  msjax eval --workdir DIR
  msjax report DIR
  msjax claims --paper {protomm,infomae,promobal,all} --workdir DIR [--seeds N]

train, eval and claims cache compiled programs in ~/.cache/msjax/jax
(--compile-cache DIR to move it, --no-compile-cache to turn it off).

Run 'msjax <command> --help' for a command's options. Errors a user can fix
are printed as one line and exit with status 2.
"""
_TRAIN_EPILOG = """config overrides:
  --config.a.b=value    set key a.b of the experiment config, e.g.
                        --config.train.total_steps=200
                        --config.optim.learning_rate=0.01
                        (repeatable; unknown keys and values of the wrong
                        type are refused)

Training resumes automatically from the newest intact checkpoint in DIR. A
DIR holding a run of another config (method, model, data, loss, optimiser)
is refused unless --restart is given, which moves that run to
DIR/previous-<n>/ and starts over.
"""


def _seed_list(text: str) -> tuple[int, ...]:
  """``"100,101"`` -> ``(100, 101)``; argparse turns the error into one line."""
  try:
    seeds = tuple(int(s) for s in text.split(",") if s.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"expected comma-separated integers, got {text!r}"
    ) from None
  if not seeds:
    raise argparse.ArgumentTypeError("expected at least one seed")
  return seeds


_PAPERS = ("protomm", "infomae", "promobal")


def _paper_list(text: str) -> tuple[str, ...]:
  """``"protomm,promobal"`` or ``"all"`` -> the papers, in the given order."""
  if text == "all":
    return _PAPERS
  papers = tuple(p.strip() for p in text.split(",") if p.strip())
  unknown = [p for p in papers if p not in _PAPERS]
  if unknown or not papers:
    raise argparse.ArgumentTypeError(
      f"expected all or a comma-separated list of {', '.join(_PAPERS)};"
      f" got {text!r}"
    )
  return tuple(dict.fromkeys(papers))


def _parser() -> argparse.ArgumentParser:
  raw = argparse.RawDescriptionHelpFormatter
  parser = argparse.ArgumentParser(
    prog="msjax", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=raw
  )
  commands = parser.add_subparsers(dest="command", required=True)
  train = commands.add_parser(
    "train",
    help="train (resuming from DIR), then evaluate",
    description="Train an experiment config in DIR, then evaluate it.",
    epilog=_TRAIN_EPILOG,
    formatter_class=raw,
    usage="msjax train [-h] --config FILE.py[:arg] --workdir DIR"
    " [--config.a.b=value ...] [--restart] [--compile-cache DIR |"
    " --no-compile-cache]",
  )
  train.add_argument(
    "--config",
    required=True,
    metavar="FILE.py[:arg]",
    help="experiment file, e.g. experiments/protomm.py or"
    " experiments/protomm.py:smoke",
  )
  train.add_argument(
    "--workdir", required=True, metavar="DIR", help="run directory"
  )
  train.add_argument(
    "--restart",
    action="store_true",
    help="start over: move a previous run in DIR to DIR/previous-<n>/",
  )
  evaluate = commands.add_parser(
    "eval",
    help="evaluate a workdir",
    description="Run the evaluation protocol of the config saved in DIR.",
  )
  evaluate.add_argument("--workdir", required=True, metavar="DIR")
  report = commands.add_parser(
    "report",
    help="plots and summary of a workdir",
    description="Write PNG plots and summary.md to DIR/report/.",
  )
  report.add_argument("workdir", metavar="DIR")
  claims = commands.add_parser(
    "claims",
    help="run the papers' headline comparisons (resumable)",
    description="Train and score each paper's comparison at equal budget"
    " over seeds and generator settings; write DIR/claims.md and PNG"
    " charts. A killed suite resumes where it stopped.",
  )
  claims.add_argument(
    "--paper",
    required=True,
    type=_paper_list,
    metavar="{protomm,infomae,promobal,all}",
    help="a paper, a comma-separated list of them, or all",
  )
  claims.add_argument("--workdir", required=True, metavar="DIR")
  claims.add_argument("--seeds", type=int, default=3, help="default 3")
  claims.add_argument(
    "--budget",
    default="default",
    choices=("default", "smoke"),
    help="steps and batch per run (smoke: seconds, for tests)",
  )
  claims.add_argument(
    "--settings",
    default="default,skewed",
    help="comma-separated generator settings (docs/claims.md)",
  )
  claims.add_argument(
    "--runs",
    default="",
    help="comma-separated run names to keep (default: all)",
  )
  claims.add_argument(
    "--lr-grid",
    action="store_true",
    help="instead of the table, train every run at every rate of the"
    " learning-rate grid (setting default, seeds --grid-seeds) and write"
    " DIR/lr_grid.md",
  )
  claims.add_argument(
    "--grid-seeds",
    type=_seed_list,
    default=None,
    help="comma-separated seeds of the learning-rate grid (default"
    " msjax.claims.suites.GRID_SEEDS: 100,101,102; keep them apart from the"
    " table's 0 .. seeds-1)",
  )
  for command in (train, evaluate, claims):
    _add_cache_flags(command)
  return parser


def _add_cache_flags(command: argparse.ArgumentParser) -> None:
  group = command.add_mutually_exclusive_group()
  group.add_argument(
    "--compile-cache",
    metavar="DIR",
    default=None,
    help="JAX persistent compilation cache directory (default:"
    " $JAX_COMPILATION_CACHE_DIR, $MSJAX_COMPILE_CACHE or"
    " ~/.cache/msjax/jax)",
  )
  group.add_argument(
    "--no-compile-cache",
    dest="use_compile_cache",
    action="store_false",
    help="compile every program afresh (no persistent cache)",
  )


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  """Parses the command line; ``--config.a.b=value`` items are returned apart.

  Args:
    argv: the arguments without the program name.

  Returns:
    ``(namespace, overrides)``.
  """
  parser = _parser()
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  namespace = parser.parse_args(rest)
  if overrides and namespace.command != "train":
    parser.error("--config.* overrides are accepted by 'train' only")
  return namespace, overrides


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status."""
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  cache = None
  try:
    host_memory.configure_from_env()
    if args.command in ("train", "eval", "claims"):
      cache = compile_cache.configure(
        args.compile_cache, args.use_compile_cache
      )
  except ValueError as error:
    print(f"msjax: error: {error}", file=sys.stderr)
    return 2
  import jax  # noqa: PLC0415 (fast --help)

  from msjax import train  # noqa: PLC0415
  from msjax.train import tensorboard  # noqa: PLC0415

  try:
    if args.command == "train":
      config = train.load_config(args.config, overrides)
      outcome = train.train_and_evaluate(
        config,
        args.workdir,
        restart=args.restart,
        step_export_dir=compile_cache.step_export_dir(cache),
      )
      if outcome["eval"] is not None:
        print(train.format_results(outcome["eval"]))
    elif args.command == "eval":
      results = train.evaluate(args.workdir)
      if jax.process_index() == 0:
        tensorboard.write_eval(f"{args.workdir}/tensorboard", results)
      print(train.format_results(results))
    elif args.command == "claims":
      from msjax import claims  # noqa: PLC0415

      papers = args.paper
      only = tuple(r for r in args.runs.split(",") if r)
      if args.lr_grid:
        seeds = (
          {} if args.grid_seeds is None else {"grid_seeds": args.grid_seeds}
        )
        path = claims.run_lr_grid(
          papers, args.workdir, budget=args.budget, only=only, **seeds
        )
      else:
        path = claims.run_claims(
          papers,
          args.workdir,
          seeds=args.seeds,
          budget=args.budget,
          setting_names=tuple(s for s in args.settings.split(",") if s),
          only=only,
        )
      print(path)
    else:
      for path in train.report(args.workdir):
        print(path)
  except train.MsjaxError as error:
    print(f"msjax: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
