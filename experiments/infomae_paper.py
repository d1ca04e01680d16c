"""InfoMAE with the paper's settings on the MOD vehicle-detection builder.

    msjax train --config experiments/infomae_paper.py:stage=1 --workdir DIR1
    msjax train --config experiments/infomae_paper.py:stage=2 --workdir DIR2 \
        --config.train.init_from=DIR1

AdamW with a cosine schedule, MAE mask ratio 0.75, the base SWIN encoders;
stage 2 adds the discriminators (own AdamW group) and temporal locality on
sequences of consecutive windows. The MOD files must be in
``config.data.manual_dir``. Arguments: ``smoke``, ``stage`` (1 or 2).
"""

from msjax.data import builders
from msjax.methods import infomae
from msjax.train import config_lib
from msjax.train.errors import ConfigError


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, stage=1)
  if arg.stage not in (1, 2):
    raise ConfigError(f"stage must be 1 or 2, got {arg.stage}")
  smoke = arg.smoke
  sections = infomae.default_config("tiny" if smoke else "base")
  sections.loss.stage = arg.stage
  sections.loss.mask_ratio = 0.75
  # MOD's patch grids are padded to the window grid, and stage 2's time and
  # frequency masks zero whole patches: as ordinary ("visible") tokens,
  # such empty patches blow the base SWIN's gradients past float32's range
  # (msjax.nn.SwinEncoder.empty_tokens; docs/claims.md, "Empty tokens").
  # "masked" empty tokens cover the padding too.
  sections.model.swin.pad_tokens = "masked"
  sections.model.swin.empty_tokens = "masked"
  if smoke:
    # MOD's acoustic input has 1600 frequency bins: the tiny config's (2, 1)
    # patches would give the MAE decoder's global attention 8000 tokens.
    sections.model.patch_size = (20, 1)
  data = builders.CONFIGS["mod_vehicle"]()  # FOCAL's interval-FFT input
  optim = config_lib.optim_config(
    optimizer="adamw",
    learning_rate=1e-4 if arg.stage == 2 else 1.5e-4,
    schedule="cosine",
    warmup_steps=0 if smoke else 1000,
    weight_decay=0.05,
  )
  optim.groups.discriminators = config_lib.optim_group(
    optim, learning_rate=1e-4, weight_decay=0.0
  )
  train = config_lib.train_config(
    batch_size=16 if smoke else 128,
    sequence_length=sections.loss.seq_len if arg.stage == 2 else 1,
    total_steps=4 if smoke else 40_000,
    log_every=2 if smoke else 100,
  )
  return config_lib.make_config(
    seed=0,
    method="infomae",
    data=data,
    model=sections.model,
    loss=sections.loss,
    optim=optim,
    train=train,
    checkpoint=config_lib.checkpoint_config(
      every_steps=2 if smoke else 2000, keep=3
    ),
    eval=config_lib.eval_config(protocol="linear_probe"),
  )
