"""ProtoMM with the paper's hyperparameters on a real dataset builder.

    msjax train --config experiments/protomm_paper.py:dataset=wesad \
        --workdir DIR

MPP with alpha 0.5, tau 0.1, Sinkhorn epsilon 0.05 and 3 iterations (SwAV's
values; msjax's ProtoMM default is tau 0.2, epsilon 0.02, with which the
between-modality term learns -- see docs/claims.md), the paper-size
encoders; the raw files must be in ``config.data.manual_dir``
(the run fails with a one-line message naming them otherwise). Arguments:
``smoke``; ``dataset`` one of wesad, pamap2, realworld_har, basic_motions.
"""

from msjax.data import builders
from msjax.methods import protomm
from msjax.train import config_lib
from msjax.train.errors import ConfigError

DATASETS = ("wesad", "pamap2", "realworld_har", "basic_motions")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, dataset="wesad")
  if arg.dataset not in DATASETS:
    raise ConfigError(f"dataset must be one of {DATASETS}, got {arg.dataset!r}")
  smoke = arg.smoke
  sections = protomm.default_config("tiny" if smoke else "paper")
  loss = sections.loss
  loss.alpha, loss.tau, loss.epsilon, loss.sinkhorn_iters = 0.5, 0.1, 0.05, 3
  optim = config_lib.optim_config(
    optimizer="adamw",
    learning_rate=1e-3,
    schedule="cosine",
    warmup_steps=0 if smoke else 1000,
    weight_decay=1e-4,
  )
  train = config_lib.train_config(
    batch_size=16 if smoke else 256,
    total_steps=4 if smoke else 20_000,
    log_every=2 if smoke else 100,
  )
  return config_lib.make_config(
    seed=0,
    method="protomm",
    data=builders.CONFIGS[arg.dataset](),
    model=sections.model,
    loss=loss,
    optim=optim,
    train=train,
    checkpoint=config_lib.checkpoint_config(
      every_steps=2 if smoke else 2000, keep=3
    ),
    eval=config_lib.eval_config(protocol="linear_probe"),
  )
