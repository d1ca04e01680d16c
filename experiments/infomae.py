"""InfoMAE on the built-in synthetic data (spectrograms), stage 1 or 2.

    msjax train --config experiments/infomae.py:stage=1 --workdir /tmp/mae1
    msjax train --config experiments/infomae.py:stage=2 --workdir /tmp/mae2 \
        --config.train.init_from=/tmp/mae1

Stage 1 pretrains each modality's masked autoencoder; stage 2 aligns the
modalities (shared/private density-ratio losses, discriminators with their
own optimiser, temporal locality on sequences of consecutive windows) and
starts from the stage-1 encoders named by ``train.init_from`` (empty: from
scratch). Arguments: ``smoke``, ``stage`` (1 or 2).

The model and loss carry the options the claims suite uses (docs/claims.md,
"InfoMAE"): no LayerNorm on the patch embedding (it erases the input's
amplitude), the decoder reconstructs ``log(1 + |X|)`` of each (real, imag)
pair, the projectors see the encoder features less their mean, all-zero
input patches (padding, stage 2's time and frequency masks) are hidden
like MAE-masked ones (``model.swin.empty_tokens``: visible, they send the
encoder gradients of about 1e8; docs/claims.md, "InfoMAE: empty tokens"),
and the probe reads the encoders; without ``smoke`` the SWIN is 64 wide
(the tiny 8-wide one learns no more than its random initialisation).
SPEC's choices stay the method's defaults (``infomae.default_config``).
"""

from msjax.data import synthetic
from msjax.methods import infomae
from msjax.train import config_lib
from msjax.train.errors import ConfigError


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, stage=2)
  smoke = arg.smoke
  if arg.stage not in (1, 2):
    raise ConfigError(f"stage must be 1 or 2, got {arg.stage}")
  sections = infomae.default_config("tiny")
  sections.loss.stage = arg.stage
  sections.loss.rec_target = "pair_log_magnitude"
  sections.model.swin.update(infomae.SUITE_SWIN)
  sections.model.center_features = True
  if not smoke:
    sections.model.swin.update(embed_dim=64, out_dim=64, num_heads=4)
  data = synthetic.default_config(smoke=smoke)
  if smoke and arg.stage == 2:
    # The temporal-locality sampler needs batch / seq_len sequences that lie
    # 2 * seq_len windows apart: give the smoke data enough sessions for that.
    data.num_sessions = 8
  data.representation = "stft"
  data.stft.output = "real_imag"
  optim = config_lib.optim_config(
    optimizer="adamw", learning_rate=3e-3, schedule="cosine", weight_decay=0.05
  )
  optim.groups.discriminators = config_lib.optim_group(
    optim, learning_rate=3e-3, weight_decay=0.0
  )
  seq_len = sections.loss.seq_len if arg.stage == 2 else 1
  train = config_lib.train_config(
    batch_size=16 if smoke else 64,
    sequence_length=seq_len,
    total_steps=4 if smoke else 200,
    log_every=2 if smoke else 20,
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
      every_steps=2 if smoke else 100, keep=2
    ),
    eval=config_lib.eval_config(
      protocol="linear_probe", probe_steps=20 if smoke else 100
    ),
  )
