"""ProMoBal on the built-in synthetic PPG + ACC data (supervised).

    msjax train --config experiments/promobal.py --workdir /tmp/promobal

Arguments: ``smoke``; ``lambdas=<set>`` picks the loss weights of SPEC §3.6
(crema_d, nvgesture, sarcasm, twitter2015, kinetics_sounds).
"""

from msjax.data import synthetic
from msjax.methods import promobal
from msjax.train import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, lambdas="crema_d")
  smoke = arg.smoke
  sections = promobal.default_config("tiny", dataset=arg.lambdas)
  data = synthetic.default_config(smoke=smoke)
  sections.model.num_classes = synthetic.TASKS[data.task]
  optim = config_lib.optim_config(
    optimizer="adamw", learning_rate=3e-3, schedule="cosine", weight_decay=1e-4
  )
  train = config_lib.train_config(
    batch_size=16 if smoke else 64,
    total_steps=4 if smoke else 200,
    log_every=2 if smoke else 20,
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
      every_steps=2 if smoke else 100, keep=2
    ),
    eval=config_lib.eval_config(
      protocol="linear_probe", probe_steps=20 if smoke else 100
    ),
  )
