"""ProMoBal with the paper's optimisation on a real dataset builder.

    msjax train --workdir DIR \
        --config experiments/promobal_paper.py:dataset=wesad,lambdas=crema_d

SGD with momentum 0.9 and weight decay 0.1, the learning rate multiplied by
0.1 at epoch 70 of 150; ``lambdas`` picks the loss weights of SPEC §3.6
(crema_d, nvgesture, sarcasm, twitter2015, kinetics_sounds). Epoch length is
``steps_per_epoch`` (set it to ``num_train_windows // batch_size``).
Arguments: ``smoke``, ``dataset``, ``lambdas``, ``steps_per_epoch``.
"""

from msjax.data import builders
from msjax.methods import promobal
from msjax.train import config_lib
from msjax.train.errors import ConfigError

DATASETS = ("wesad", "pamap2", "realworld_har", "basic_motions", "mod_vehicle")
EPOCHS, DECAY_EPOCH = 150, 70


def get_config(arg=None):
  arg = config_lib.parse_arg(
    arg, smoke=False, dataset="wesad", lambdas="crema_d", steps_per_epoch=100
  )
  if arg.dataset not in DATASETS:
    raise ConfigError(f"dataset must be one of {DATASETS}, got {arg.dataset!r}")
  smoke = arg.smoke
  sections = promobal.default_config(
    "tiny" if smoke else "paper", dataset=arg.lambdas
  )
  data = builders.CONFIGS[arg.dataset]()
  # The class count of the builder's task (pamap2: 18 activity IDs).
  sections.model.num_classes = builders.num_classes(data)
  per_epoch = 1 if smoke else arg.steps_per_epoch
  optim = config_lib.optim_config(
    optimizer="sgd",
    learning_rate=1e-2,
    momentum=0.9,
    weight_decay=0.1,
    schedule="step",
    step_boundaries=(DECAY_EPOCH * per_epoch,),
    step_factor=0.1,
  )
  train = config_lib.train_config(
    batch_size=16 if smoke else 64,
    total_steps=4 if smoke else EPOCHS * per_epoch,
    log_every=2 if smoke else per_epoch,
  )
  return config_lib.make_config(
    seed=0,
    method="promobal",
    data=data,
    model=sections.model,
    loss=sections.loss,
    optim=optim,
    train=train,
    checkpoint=config_lib.checkpoint_config(
      every_steps=2 if smoke else 10 * per_epoch, keep=3
    ),
    eval=config_lib.eval_config(protocol="linear_probe"),
  )
