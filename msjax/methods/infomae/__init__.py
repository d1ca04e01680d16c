"""InfoMAE (SPEC §4): pair-efficient cross-modal alignment with MAEs.

One concept per module:

* :mod:`~msjax.methods.infomae.method` — the method's hooks (``init``,
  ``loss_fn``, ``embed``, …) and its :data:`METHOD` record;
* :mod:`~msjax.methods.infomae.losses` — the stage-1 and stage-2 objectives;
* :mod:`~msjax.methods.infomae.parts` — module construction from
  ``config.model``, input preparation and the discriminator table.
"""

from msjax.methods.infomae.method import (
  DISC_GROUP,
  EVAL_FEATURES,
  METHOD,
  SUITE_SWIN,
  align,
  default_config,
  embed,
  init,
  init_from_pretrained,
  init_from_stage1,
  loss_fn,
  param_labels,
  requires_paired_rows,
  swin_encoder_model,
)

__all__ = [
  "DISC_GROUP",
  "EVAL_FEATURES",
  "METHOD",
  "SUITE_SWIN",
  "align",
  "default_config",
  "embed",
  "init",
  "init_from_pretrained",
  "init_from_stage1",
  "loss_fn",
  "param_labels",
  "requires_paired_rows",
  "swin_encoder_model",
]
