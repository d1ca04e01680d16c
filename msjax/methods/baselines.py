"""The baselines as method entries with the full method interface.

Each entry is a :class:`MethodEntry` (a module-like namespace) whose
functions are those of :mod:`msjax.methods.supervised` or
:mod:`msjax.methods.selfsup` with the variant bound:

* :data:`supervised_concat`, :data:`supervised_sum`: supervised late fusion
  (concatenation / sum of the per-modality features) + linear classifier.
* :data:`clip`: CLIP-style symmetric InfoNCE between modalities.
* :data:`simclr`: SimCLR (NT-Xent of two augmented views) per modality.
* :data:`slip`: SLIP, CLIP between modalities + SimCLR within each.
* :data:`joint`: joint multimodal pretraining: NT-Xent between two augmented
  views of the joint (concatenated, projected) multimodal representation.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

from msjax.methods import _common, selfsup, supervised

__all__ = [
  "MethodEntry",
  "clip",
  "joint",
  "simclr",
  "slip",
  "supervised_concat",
  "supervised_sum",
]


class MethodEntry(NamedTuple):
  """The method interface of docs/architecture.md as a namespace.

  Attributes:
    default_config: ``(size="tiny") -> ConfigDict(model, loss)``.
    init: ``(rng, config, example_batch) -> variables``.
    loss_fn: ``(variables, batch, rng, config, step) -> (loss, (state,
      metrics))``.
    embed: ``(variables, batch, config) -> {"fused", <modality>...}``.
    param_labels: ``(params, config) -> pytree of "main"``.
    post_update: ``(params, config, step) -> params`` (identity).
    requires_paired_rows: ``(config) -> bool``, whether every row of a batch
      must be a synchronized multimodal sample; ``None``: always (see
      ``msjax.train.runtime.requires_paired_rows``).
    predict: ``(variables, batch, config) -> {"fused": logits [B, C], ...}``,
      the method's own classifier (supervised methods), or ``None``.
  """

  default_config: Callable
  init: Callable
  loss_fn: Callable
  embed: Callable
  param_labels: Callable = _common.all_main_labels
  post_update: Callable = _common.identity_post_update
  requires_paired_rows: Callable | None = None
  predict: Callable | None = None


def _supervised(fusion: str) -> MethodEntry:
  bind = functools.partial(functools.partial, fusion=fusion)
  return MethodEntry(
    default_config=supervised.default_config,
    init=bind(supervised.init),
    loss_fn=bind(supervised.loss_fn),
    embed=bind(supervised.embed),
    predict=bind(supervised.predict),
  )


def _selfsup(variant: str) -> MethodEntry:
  bind = functools.partial(functools.partial, variant=variant)
  return MethodEntry(
    default_config=bind(selfsup.default_config),
    init=bind(selfsup.init),
    loss_fn=bind(selfsup.loss_fn),
    embed=bind(selfsup.embed),
    # SimCLR has no term that relates two modalities.
    requires_paired_rows=_common.unpaired_rows_accepted
    if variant == "simclr"
    else None,
  )


supervised_concat = _supervised("concat")
supervised_sum = _supervised("sum")
clip = _selfsup("clip")
slip = _selfsup("slip")
simclr = _selfsup("simclr")
joint = _selfsup("joint")
