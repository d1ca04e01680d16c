"""The baselines as method entries with the full method interface.

Each entry is a :class:`~msjax.methods.Method` whose functions
are those of :mod:`msjax.methods.supervised` or
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

from msjax.methods import selfsup, supervised
from msjax.methods.interface import Method, always_paired, never_paired

__all__ = [
  "clip",
  "joint",
  "simclr",
  "slip",
  "supervised_concat",
  "supervised_sum",
]


def _supervised(fusion: str) -> Method:
  bind = functools.partial(functools.partial, fusion=fusion)
  return Method(
    default_config=supervised.default_config,
    init=bind(supervised.init),
    loss_fn=bind(supervised.loss_fn),
    embed=bind(supervised.embed),
    predict=bind(supervised.predict),
  )


def _selfsup(variant: str) -> Method:
  bind = functools.partial(functools.partial, variant=variant)
  return Method(
    default_config=bind(selfsup.default_config),
    init=bind(selfsup.init),
    loss_fn=bind(selfsup.loss_fn),
    embed=bind(selfsup.embed),
    align=bind(selfsup.align) if variant in ("clip", "slip") else None,
    # SimCLR has no term that relates two modalities.
    requires_paired_rows=never_paired if variant == "simclr" else always_paired,
  )


supervised_concat = _supervised("concat")
supervised_sum = _supervised("sum")
clip = _selfsup("clip")
slip = _selfsup("slip")
simclr = _selfsup("simclr")
joint = _selfsup("joint")
