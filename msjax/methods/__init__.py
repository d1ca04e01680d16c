"""Methods behind one interface (docs/architecture.md).

Every value of :data:`METHODS` is a :class:`Method`: the required
``default_config``, ``init``, ``loss_fn`` and ``embed``, and the optional
hooks ``param_labels``, ``post_update``, ``requires_paired_rows``,
``init_from_pretrained`` and ``predict`` with their defaults filled in.
"""

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
  clip,
  joint,
  simclr,
  slip,
  supervised_concat,
  supervised_sum,
)
from msjax.methods.interface import Method

__all__ = ["METHODS", "Method"]

#: Method name (``config.method``) -> its functions.
METHODS: dict[str, Method] = {
  "protomm": protomm.METHOD,
  "promobal": promobal.METHOD,
  "infomae": infomae.METHOD,
  "supervised_concat": supervised_concat,
  "supervised_sum": supervised_sum,
  "clip": clip,
  "simclr": simclr,
  "joint": joint,
  "slip": slip,
  "ogm_ge": ogm_ge.METHOD,
  "agm": agm.METHOD,
  "mla": mla.METHOD,
  "mmpareto": mmpareto.METHOD,
  "tnc": tnc.METHOD,
  "tstcc": tstcc.METHOD,
  "mae": mae.METHOD,
  "focal": focal.METHOD,
  "gmc": gmc.METHOD,
  "cocoa": cocoa.METHOD,
  "cav_mae": cav_mae.METHOD,
  "moco": moco.METHOD,
}
