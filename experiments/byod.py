"""Any method on your own recordings: an npz file of windows (docs/byod.md).

    msjax train --workdir DIR --config \
      experiments/byod.py:method=protomm,path=study.npz,modalities=ppg+acc

Arguments (``key=value``, comma-separated):

* ``method``: a key of ``msjax.methods.METHODS`` (default protomm).
* ``path``: the npz file (layout in ``msjax.data.npz`` and docs/byod.md).
* ``modalities``: the file's modality keys to use, joined by ``+``.
* ``rates``: samples per second of each modality, joined by ``+`` in the
  same order; needed by the spectrogram methods (infomae, mae), which read
  STFTs computed once when the file is opened.
* ``test_subjects``: subject ids held out for testing, joined by ``+``
  (empty: a seeded quarter of the subjects).
* ``stage``: InfoMAE's stage, 1 or 2.
* ``pair_ratio``: InfoMAE stage 2's fraction of synchronized windows (the
  rest are unpaired: their modalities come from different windows and feed
  only the unimodal terms). Stage 1 always reads unpaired pools.
* ``pair_share``: the fraction of stage 2's rows that are synchronized pairs
  (the pairs are repeated to reach it; default 0: each pair once, the
  natural proportion ``pair_ratio``; ``data.pair_share``).
* ``seq_len``: InfoMAE stage 2's temporal-locality sequences (default 1:
  the term is off). ``L > 1`` trains on sequences of L consecutive windows
  of a session: the pairs are drawn as runs of L synchronized windows and
  the unpaired rows in chunks of L (``data.block``); needs ``time_index``
  or ``timestamp`` in the file.
* ``seed``, ``steps``, ``batch``, ``lr``; ``smoke`` shrinks the run.
"""

import os

import numpy as np

from msjax.data import npz, pairs
from msjax.methods import METHODS, infomae
from msjax.train import config_lib
from msjax.train.errors import ConfigError

SPECTROGRAM_METHODS = ("infomae", "mae")
SEQUENCE_METHODS = ("focal", "tnc")


def _split(text: str, kind=str) -> tuple:
  return tuple(kind(v) for v in text.split("+") if v)


def _num_classes(path: str, key: str) -> int:
  if not os.path.exists(path):
    return 2  # the source reports the missing file when training starts
  with np.load(path, allow_pickle=False) as data:
    if key not in data.files:
      return 2
    labels = data[key]
  if labels.dtype.kind not in "iub" or not (labels >= 0).any():
    return 2  # the source explains bad labels
  return int(labels.max()) + 1


def get_config(arg=None):
  arg = config_lib.parse_arg(
    arg,
    method="protomm",
    path="",
    modalities="",
    rates="",
    test_subjects="",
    stage=2,
    pair_ratio=1.0,
    pair_share=0.0,
    seq_len=1,
    seed=0,
    steps=1000,
    batch=64,
    lr=3e-3,
    smoke=False,
  )
  if arg.method not in METHODS:
    raise ConfigError(
      f"method must be one of {sorted(METHODS)}, got {arg.method!r}"
    )
  # Without path= or modalities= the config still loads; training then
  # stops at once with the npz source's one-line error naming what to set.
  modalities = _split(arg.modalities)
  data = npz.default_config(arg.path, modalities)
  data.test_subjects = _split(arg.test_subjects, int)
  sections = METHODS[arg.method].default_config("tiny")
  if arg.method in SPECTROGRAM_METHODS:
    rates = _split(arg.rates, float)
    if len(rates) != len(modalities):
      raise ConfigError(
        f"{arg.method} reads spectrograms: give rates=<Hz>+<Hz> for"
        f" {'+'.join(modalities)}"
      )
    data.representation = "stft"
    data.sample_rate_hz = dict(zip(modalities, rates, strict=True))
    # The suite's SWIN (infomae.SUITE_SWIN): the input's amplitude kept,
    # all-zero patches (padding, stage 2's masks) hidden.
    sections.model.swin.update(infomae.SUITE_SWIN)
  if arg.method == "infomae":
    sections.loss.stage = arg.stage
    if arg.seq_len < 1:
      raise ConfigError(f"seq_len must be >= 1, got {arg.seq_len}")
    sections.loss.seq_len = arg.seq_len if arg.stage == 2 else 1
    # The claims suite's other options (docs/claims.md, "InfoMAE"):
    # reconstruct log(1 + |X|) of each (real, imag) pair, centre the
    # features the projectors see (stage 2 collapses without).
    sections.model.center_features = True
    if data.stft.output == "real_imag":
      sections.loss.rec_target = "pair_log_magnitude"
    if arg.stage == 1:
      data = pairs.pairing_config(
        data, pair_ratio=0.0, subset="unpaired", unpaired="all"
      )
    elif arg.pair_ratio < 1.0:
      data = pairs.pairing_config(
        data,
        pair_ratio=arg.pair_ratio,
        subset="mixed",
        unpaired="all",
        block=sections.loss.seq_len,
        pair_share=arg.pair_share,
      )
  if "num_classes" in sections.model:
    sections.model.num_classes = _num_classes(arg.path, "label")
  optim = config_lib.optim_config(
    optimizer="adamw",
    learning_rate=arg.lr,
    schedule="cosine",
    weight_decay=1e-4,
  )
  if arg.method == "infomae" and arg.stage == 2:
    optim.groups.discriminators = config_lib.optim_group(
      optim, learning_rate=arg.lr, weight_decay=0.0
    )
  sequences = SEQUENCE_METHODS + (("infomae",) if arg.stage == 2 else ())
  seq = sections.loss.seq_len if arg.method in sequences else 1
  train = config_lib.train_config(
    batch_size=16 if arg.smoke else arg.batch,
    sequence_length=seq,
    total_steps=4 if arg.smoke else arg.steps,
    log_every=2 if arg.smoke else 100,
  )
  return config_lib.make_config(
    seed=arg.seed,
    method=arg.method,
    data=data,
    model=sections.model,
    loss=sections.loss,
    optim=optim,
    train=train,
    checkpoint=config_lib.checkpoint_config(
      every_steps=2 if arg.smoke else 500, keep=2
    ),
    eval=config_lib.eval_config(
      protocol="linear_probe", probe_steps=20 if arg.smoke else 100
    ),
  )
