"""InfoMAE's pair-ratio subsets: few synchronized pairs, much unpaired data.

``pair_ratio_split`` keeps ``round(pair_ratio * N)`` windows (chosen by
``default_rng(seed)``) as synchronized multimodal pairs. The remaining windows
become unpaired unimodal data: with ``unpaired="disjoint"`` (default) they are
dealt round-robin to the modalities, so each contributes exactly one modality
and no cross-modal pair can be recovered from them; with ``"all"`` every
remaining window contributes every modality (pairing is broken later by
independent sampling). The split is a ``PairSplit`` record, saved and loaded as
JSON (``save_pair_split`` / ``load_pair_split``), so a run can record and reuse
it.

As a config: ``pairing_config(base_data_config, pair_ratio=..., subset=...)``
gives a ``config.data`` with ``source="paired"`` wrapping any other source;
``make_source`` then returns, for the "train" split, the pairs only
(``subset="paired"``, e.g. InfoMAE stage 2), the ``PairedSource`` of pairs +
unpaired rows (``"mixed"``), or only the unsynchronized rows
(``"unpaired"``, e.g. unimodal pretraining); other splits are the base
source unchanged. With ``record_path`` set the split is saved there as JSON
on first use and reloaded (and checked) afterwards.

``PairedSource`` presents the result as one Source: examples ``0 .. P-1`` are
the pairs; example ``P + j`` takes modality m from its own unpaired pool, window
``unpaired[m][j % len(unpaired[m])]`` after a per-modality permutation, so rows
beyond P are not synchronized. Batches gain a ``"paired"`` bool ``[B]`` key (an
extension of the batch format) and unpaired rows have label -1. The training
loop accepts such batches only for methods whose
``requires_paired_rows(config)`` is false (SimCLR, InfoMAE stage 1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import ml_collections
import numpy as np

from msjax.data.loader import loader_options

__all__ = [
  "PairSplit",
  "pair_ratio_split",
  "save_pair_split",
  "load_pair_split",
  "PairedSource",
  "pairing_config",
  "paired_source",
]


class PairSplit(NamedTuple):
  """A recorded pair-ratio split.

  Attributes:
    pair_ratio: requested fraction of paired windows.
    seed: split seed.
    num_examples: N of the split source.
    paired: ``int64 [P]`` sorted indices of synchronized pairs.
    unpaired: modality -> ``int64 [U_m]`` sorted indices used unimodally.
  """

  pair_ratio: float
  seed: int
  num_examples: int
  paired: np.ndarray
  unpaired: dict[str, np.ndarray]


def pair_ratio_split(
  num_examples: int,
  *,
  pair_ratio: float,
  modalities: tuple[str, ...],
  seed: int,
  unpaired: Literal["disjoint", "all"] = "disjoint",
) -> PairSplit:
  """Splits N windows into pairs and unimodal pools (deterministic).

  Args:
    num_examples: N.
    pair_ratio: fraction in [0, 1] kept as pairs (at least 1 when > 0).
    modalities: the modality names.
    seed: split seed.
    unpaired: "disjoint" or "all" (see module docstring).

  Returns: A ``PairSplit``.
  """
  if not 0.0 <= pair_ratio <= 1.0:
    raise ValueError(f"pair_ratio={pair_ratio} must be in [0, 1].")
  if not modalities:
    raise ValueError("pair_ratio_split needs at least one modality.")
  order = np.random.default_rng([int(seed), 11]).permutation(num_examples)
  num_pairs = int(round(pair_ratio * num_examples))
  if pair_ratio > 0:
    num_pairs = max(1, num_pairs)
  rest = order[num_pairs:]
  if unpaired == "disjoint":
    pools = {
      m: np.sort(rest[i :: len(modalities)]) for i, m in enumerate(modalities)
    }
  elif unpaired == "all":
    pools = {m: np.sort(rest) for m in modalities}
  else:
    raise ValueError(f"unpaired={unpaired!r} unknown; use disjoint or all.")
  return PairSplit(
    float(pair_ratio),
    int(seed),
    int(num_examples),
    np.sort(order[:num_pairs]),
    pools,
  )


def save_pair_split(path: str, split: PairSplit) -> None:
  """Writes the split as JSON (indices as lists)."""
  record = dict(
    pair_ratio=split.pair_ratio,
    seed=split.seed,
    num_examples=split.num_examples,
    paired=split.paired.tolist(),
    unpaired={m: v.tolist() for m, v in split.unpaired.items()},
  )
  with open(path, "w") as f:
    json.dump(record, f)


def load_pair_split(path: str) -> PairSplit:
  """Reads a split written by ``save_pair_split``."""
  with open(path) as f:
    record = json.load(f)
  return PairSplit(
    float(record["pair_ratio"]),
    int(record["seed"]),
    int(record["num_examples"]),
    np.asarray(record["paired"], np.int64),
    {m: np.asarray(v, np.int64) for m, v in record["unpaired"].items()},
  )


class PairedSource:
  """A Source view of a ``PairSplit`` over a base source (see module doc)."""

  def __init__(self, base: Any, split: PairSplit) -> None:
    """Wraps ``base`` (a Source with ``get``) using ``split``."""
    if split.num_examples != base.num_examples:
      raise ValueError(
        f"pair split was made for {split.num_examples} windows, the source "
        f"has {base.num_examples}; recompute the split."
      )
    missing = [m for m in base.modalities if m not in split.unpaired]
    if missing:
      raise ValueError(f"pair split lacks modalities {missing}.")
    self.base = base
    self.split = split
    self.modalities = tuple(base.modalities)
    self.num_classes = base.num_classes
    sizes = [len(split.unpaired[m]) for m in self.modalities]
    self.num_unpaired = max(sizes) if min(sizes) > 0 else 0
    self.num_examples = len(split.paired) + self.num_unpaired
    rng = np.random.default_rng([split.seed, 13])
    self._pools = {
      m: rng.permutation(split.unpaired[m]) for m in self.modalities
    }

  def element_shapes(self) -> dict[str, tuple[int, ...]]:
    """Same as the base source."""
    return self.base.element_shapes()

  def get(self, indices: np.ndarray) -> dict[str, Any]:
    """Batch of pairs (index < P) and unsynchronized rows (index >= P)."""
    indices = np.asarray(indices, dtype=np.int64)
    num_pairs = len(self.split.paired)
    is_pair = indices < num_pairs
    rows = {}
    for m in self.modalities:
      pool = self._pools[m]
      unpaired = (
        pool[(indices - num_pairs) % max(len(pool), 1)]
        if len(pool)
        else np.zeros_like(indices)
      )
      rows[m] = np.where(
        is_pair,
        self.split.paired[np.minimum(indices, max(num_pairs - 1, 0))]
        if num_pairs
        else 0,
        unpaired,
      )
    first = self.base.get(rows[self.modalities[0]])
    signals = {self.modalities[0]: first["signals"][self.modalities[0]]}
    for m in self.modalities[1:]:
      signals[m] = self.base.get(rows[m])["signals"][m]
    batch = dict(first, signals=signals)
    batch["label"] = np.where(is_pair, first["label"], -1).astype(np.int32)
    batch["paired"] = is_pair
    return batch


def pairing_config(
  base: ml_collections.ConfigDict,
  *,
  pair_ratio: float,
  subset: Literal["paired", "mixed", "unpaired"] = "mixed",
  unpaired: Literal["disjoint", "all"] = "disjoint",
  split_seed: int = 0,
  record_path: str = "",
) -> ml_collections.ConfigDict:
  """A ``config.data`` applying a pair-ratio split to ``base``'s train split.

  Keys: source ("paired"), modalities (copied from base), base, pair_ratio,
  subset, unpaired, split_seed, record_path and the loader keys
  (``msjax.data.loader.loader_options``; those of base are not read).
  """
  return ml_collections.ConfigDict(
    dict(
      source="paired",
      modalities=tuple(base.modalities),
      base=base,
      pair_ratio=float(pair_ratio),
      subset=subset,
      unpaired=unpaired,
      split_seed=int(split_seed),
      record_path=record_path,
      **loader_options(),
    )
  )


def paired_source(
  data_config: Any, split: str, make_source: Callable[[Any, str], Any]
) -> Any:
  """The source a ``pairing_config`` describes (see module docstring)."""
  base = make_source(data_config.base, split)
  if split != "train":
    return base
  if data_config.subset not in ("paired", "mixed", "unpaired"):
    raise ValueError(
      f"data.subset={data_config.subset!r} unknown; use paired, mixed or "
      "unpaired."
    )
  path = str(data_config.record_path)
  if path and os.path.exists(path):
    record = load_pair_split(path)
    if (
      record.num_examples != base.num_examples
      or record.pair_ratio != data_config.pair_ratio
    ):
      raise ValueError(
        f"pair split {path} was made for {record.num_examples} windows at "
        f"ratio {record.pair_ratio}; delete it or fix data.pair_ratio."
      )
  else:
    record = pair_ratio_split(
      base.num_examples,
      pair_ratio=data_config.pair_ratio,
      modalities=tuple(data_config.modalities),
      seed=data_config.split_seed,
      unpaired=data_config.unpaired,
    )
    if path:
      save_pair_split(path, record)
  if data_config.subset == "paired":
    if not hasattr(base, "subset"):
      raise ValueError(f"source {data_config.base.source!r} cannot subset.")
    return base.subset(record.paired)
  if data_config.subset == "unpaired":
    record = record._replace(paired=record.paired[:0])
  return PairedSource(base, record)
