"""The baselines on the built-in synthetic PPG + ACC data.

    msjax train --config experiments/baselines.py:method=clip --workdir DIR

Arguments: ``smoke``; ``method`` one of :data:`BASELINES` (default clip);
``encoder=swin`` (encoder-based methods): every modality is read as a
real/imag STFT through InfoMAE's SWIN encoder, without MAE masking, at
experiments/infomae.py's size and with its all-zero patches hidden
(``model.encoder = "swin"``), so the baseline and InfoMAE share one encoder
architecture.

    msjax train --workdir DIR \
        --config experiments/baselines.py:method=clip,encoder=swin

Budgets: the self-supervised baselines train for 1000 steps at 1e-2 (20
warmup steps), as experiments/protomm.py; the ones with a classifier of
their own (supervised, balancing) for 200 steps at 3e-3, as
experiments/promobal.py; ``method=mae`` and ``encoder=swin`` for 200 steps
at 3e-3, as one stage of experiments/infomae.py
(:data:`SELF_SUPERVISED_BUDGET`, :data:`SUPERVISED_BUDGET`).

``method=mae`` is InfoMAE's stage 1 and takes experiments/infomae.py's
evidence-backed options (docs/claims.md, "InfoMAE"): no LayerNorm on the
patch embedding, the decoder reconstructs ``log(1 + |X|)`` of each (real,
imag) pair, all-zero patches hidden, a 64-wide SWIN outside ``smoke``.
SPEC's choices stay ``mae.default_config``'s.
"""

from msjax.data import synthetic
from msjax.methods import METHODS, infomae
from msjax.train import config_lib
from msjax.train.errors import ConfigError

BASELINES = (
  "supervised_concat",
  "supervised_sum",
  "clip",
  "simclr",
  "joint",
  "slip",
  "ogm_ge",
  "agm",
  "mla",
  "mmpareto",
  "tnc",
  "tstcc",
  "mae",
  "focal",
  "gmc",
  "cocoa",
  "cav_mae",
  "moco",
)
# Methods whose loss reads runs of loss.seq_len consecutive windows.
SEQUENCE_METHODS = ("focal", "tnc")
# Methods whose encoders take spectrograms [B, C, F, N].
SPECTROGRAM_METHODS = ("mae",)
#: (steps, learning rate, warmup steps) of a baseline's run. The
#: self-supervised ones on the 1-D encoders train at experiments/protomm.py's
#: budget, the run they are compared with; at 200 steps and 3e-3 TS-TCC,
#: CAV-MAE and GMC ended level with or below their random encoders
#: (docs/claims.md, "Every self-supervised method against its raw input").
#: The baselines with a classifier of their own keep experiments/promobal.py's
#: budget, and ``method=mae`` and ``encoder=swin`` runs experiments/infomae.py's
#: (one stage).
SELF_SUPERVISED_BUDGET = (1000, 1e-2, 20)
SUPERVISED_BUDGET = (200, 3e-3, 0)
#: The baselines without a classifier of their own.
SELF_SUPERVISED = tuple(m for m in BASELINES if METHODS[m].predict is None)


def _use_encoder(encoder, method, model, data, smoke):
  """``encoder=swin``: InfoMAE's SWIN (experiments/infomae.py's size)."""
  if encoder != "swin":
    raise ConfigError(f"encoder must be 'swin' (or left out), got {encoder!r}")
  if "encoder" not in model or method in SPECTROGRAM_METHODS:
    raise ConfigError(
      f"encoder=swin needs a method built on msjax.methods.encoders, not"
      f" {method!r}"
    )
  size = {} if smoke else dict(embed_dim=64, out_dim=64, num_heads=4)
  model.update(infomae.swin_encoder_model(**infomae.SUITE_SWIN, **size))
  data.representation = "stft"
  data.stft.output = "real_imag"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, method="clip", encoder="")
  smoke = arg.smoke
  if arg.method not in BASELINES:
    raise ConfigError(f"method must be one of {BASELINES}, got {arg.method!r}")
  sections = METHODS[arg.method].default_config("tiny")
  data = synthetic.default_config(smoke=smoke)
  if arg.encoder:
    _use_encoder(arg.encoder, arg.method, sections.model, data, smoke)
  # The feed samples sequences of loss.seq_len consecutive windows for these
  # methods, and the smoke data needs enough sessions for them.
  sequence_length = (
    sections.loss.seq_len if arg.method in SEQUENCE_METHODS else 1
  )
  if smoke and sequence_length > 1:
    data.num_sessions = 8
  if arg.method in SPECTROGRAM_METHODS:
    data.representation = "stft"
  if arg.method == "mae":
    sections.loss.rec_target = "pair_log_magnitude"
    sections.model.swin.update(infomae.SUITE_SWIN)
    if not smoke:
      sections.model.swin.update(embed_dim=64, out_dim=64, num_heads=4)
  if "num_classes" in sections.model:
    sections.model.num_classes = synthetic.TASKS[data.task]
  steps, rate, warmup = (
    SELF_SUPERVISED_BUDGET
    if arg.method in SELF_SUPERVISED
    and not arg.encoder
    and arg.method not in SPECTROGRAM_METHODS
    else SUPERVISED_BUDGET
  )
  optim = config_lib.optim_config(
    optimizer="adamw",
    learning_rate=rate,
    schedule="cosine",
    warmup_steps=0 if smoke else warmup,
    weight_decay=1e-4,
  )
  train = config_lib.train_config(
    batch_size=16 if smoke else 64,
    sequence_length=sequence_length,
    total_steps=4 if smoke else steps,
    log_every=2 if smoke else steps // 10,
  )
  return config_lib.make_config(
    seed=0,
    method=arg.method,
    data=data,
    model=sections.model,
    loss=sections.loss,
    optim=optim,
    train=train,
    checkpoint=config_lib.checkpoint_config(
      every_steps=2 if smoke else max(100, steps // 4), keep=2
    ),
    eval=config_lib.eval_config(
      protocol="linear_probe", probe_steps=20 if smoke else 100
    ),
  )
