"""Methods behind one interface (docs/architecture.md).

Each value of :data:`METHODS` exposes ``default_config(size)``,
``init(rng, config, example_batch)``,
``loss_fn(variables, batch, rng, config, step)``,
``embed(variables, batch, config)``, ``param_labels(params, config)`` and
``post_update(params, config, step)``; optionally
``requires_paired_rows(config)``.
"""

from types import ModuleType

from msjax.methods import (
  agm,
  cav_mae,
  cocoa,
  focal,
  gmc,
  infomae,
  mae,
  mla,
  mmpareto,
  moco,
  ogm_ge,
  promobal,
  protomm,
  tnc,
  tstcc,
)
from msjax.methods.baselines import (
  MethodEntry,
  clip,
  joint,
  simclr,
  slip,
  supervised_concat,
  supervised_sum,
)

__all__ = ["METHODS", "MethodEntry"]

#: Method name (``config.method``) -> method module or namespace.
METHODS: dict[str, ModuleType | MethodEntry] = {
  "protomm": protomm,
  "promobal": promobal,
  "infomae": infomae,
  "supervised_concat": supervised_concat,
  "supervised_sum": supervised_sum,
  "clip": clip,
  "simclr": simclr,
  "joint": joint,
  "slip": slip,
  "ogm_ge": ogm_ge,
  "agm": agm,
  "mla": mla,
  "mmpareto": mmpareto,
  "tnc": tnc,
  "tstcc": tstcc,
  "mae": mae,
  "focal": focal,
  "gmc": gmc,
  "cocoa": cocoa,
  "cav_mae": cav_mae,
  "moco": moco,
}
