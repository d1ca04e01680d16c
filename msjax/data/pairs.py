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
beyond P are not synchronized.

Runs of consecutive windows (``block = L > 1``, for a sequence sampler such as
InfoMAE's temporal-locality term, ``train.sequence_length = L``): the pairs
are drawn as non-overlapping runs of L consecutive windows of one session
(a few synchronized stretches of recording rather than scattered windows),
and each modality's unpaired pool, sorted by (session, time), is cut into
chunks of L windows that are permuted per modality (the pool's last
``len % L`` windows, fewer than L, are left out), so the rows of an
unpaired chunk are consecutive in every modality but not synchronized across
modalities. ``PairedSource.metadata()`` gives every row a session and time
index such that a run of rows is consecutive only where it is in every
modality; ``block = 1`` is the scattered split above, unchanged.

Pair share (``pair_share = f`` in (0, 1), ``"mixed"`` only): the pairs are
presented ``k = max(1, round(f U / ((1 - f) P)))`` times (U unpaired rows, P
pairs), so about a fraction ``f`` of the rows drawn are synchronized; each
copy is its own block of sessions, so runs never join across copies.
``0`` (default) presents each pair once: the natural proportion P / (P + U).

Batches gain a ``"paired"`` bool ``[B]`` key (an extension of the batch
format) and unpaired rows have label -1. The training loop accepts such
batches only for methods whose ``requires_paired_rows(config)`` is false
(SimCLR; InfoMAE, whose stage 2 feeds unpaired rows only to its unimodal
terms).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import ml_collections
import numpy as np

from msjax.data.loader import loader_options
from msjax.data.sequences import continues, window_columns

__all__ = [
  "OPTION_DEFAULTS",
  "PairSplit",
  "pair_ratio_split",
  "pair_repeats",
  "save_pair_split",
  "load_pair_split",
  "PairedSource",
  "pairing_config",
  "paired_source",
]


#: ``data.*`` keys added after runs were saved, with the behaviour a run
#: saved without them had (``msjax.train.loop.check_workdir``).
OPTION_DEFAULTS = {"data.pair_share": 0.0}


def pair_repeats(pair_share: float, num_pairs: int, num_unpaired: int) -> int:
  """How many times the pairs are presented for a ``pair_share``.

  Args:
    pair_share: target fraction of synchronized rows in [0, 1); 0: natural.
    num_pairs: P.
    num_unpaired: U.

  Returns:
    ``k = max(1, round(f U / ((1 - f) P)))`` for ``f = pair_share``: the
    ``k`` that solves ``k P / (k P + U) = f``, rounded.
  """
  if not 0.0 <= pair_share < 1.0:
    raise ValueError(f"data.pair_share={pair_share} must be in [0, 1).")
  if pair_share == 0.0 or num_pairs == 0:
    return 1
  return max(
    1, int(round(pair_share * num_unpaired / ((1 - pair_share) * num_pairs)))
  )


class PairSplit(NamedTuple):
  """A recorded pair-ratio split.

  Attributes:
    pair_ratio: requested fraction of paired windows.
    seed: split seed.
    num_examples: N of the split source.
    paired: ``int64 [P]`` sorted indices of synchronized pairs.
    unpaired: modality -> ``int64 [U_m]`` sorted indices used unimodally.
    block: run length L: pairs come as runs of L consecutive windows and the
      unpaired pools are presented in chunks of L (1: scattered windows).
  """

  pair_ratio: float
  seed: int
  num_examples: int
  paired: np.ndarray
  unpaired: dict[str, np.ndarray]
  block: int = 1


def pair_ratio_split(
  num_examples: int,
  *,
  pair_ratio: float,
  modalities: tuple[str, ...],
  seed: int,
  unpaired: Literal["disjoint", "all"] = "disjoint",
  block: int = 1,
  session: np.ndarray | None = None,
  time_index: np.ndarray | None = None,
) -> PairSplit:
  """Splits N windows into pairs and unimodal pools (deterministic).

  Args:
    num_examples: N.
    pair_ratio: fraction in [0, 1] kept as pairs (at least 1 when > 0; with
      ``block = L``, rounded up to whole runs of L).
    modalities: the modality names.
    seed: split seed.
    unpaired: "disjoint" or "all" (see module docstring).
    block: L >= 1; L > 1 draws the pairs as runs of L consecutive windows
      and needs ``session`` and ``time_index``.
    session: ``int [N]`` session per window (only read when L > 1).
    time_index: ``int [N]`` window index in its session (only when L > 1).

  Returns: A ``PairSplit``.
  """
  if not 0.0 <= pair_ratio <= 1.0:
    raise ValueError(f"pair_ratio={pair_ratio} must be in [0, 1].")
  if not modalities:
    raise ValueError("pair_ratio_split needs at least one modality.")
  if block < 1:
    raise ValueError(f"block={block} must be >= 1.")
  if unpaired not in ("disjoint", "all"):
    raise ValueError(f"unpaired={unpaired!r} unknown; use disjoint or all.")
  rng = np.random.default_rng([int(seed), 11])
  num_pairs = int(round(pair_ratio * num_examples))
  if pair_ratio > 0:
    num_pairs = max(1, num_pairs)
  if block == 1:
    order = rng.permutation(num_examples)
    paired, rest = order[:num_pairs], order[num_pairs:]
  else:
    session, time_index = _columns(session, time_index, num_examples, block)
    paired = _pair_runs(num_pairs, block, rng, session, time_index)
    rest = np.setdiff1d(np.arange(num_examples), paired)
  if unpaired == "disjoint":
    if block == 1:
      pools = {
        m: np.sort(rest[i :: len(modalities)]) for i, m in enumerate(modalities)
      }
    else:  # whole chunks of L (in (session, time) order) to each modality
      rest = rest[np.lexsort((time_index[rest], session[rest]))]
      chunk = np.arange(len(rest)) // block
      pools = {
        m: np.sort(rest[chunk % len(modalities) == i])
        for i, m in enumerate(modalities)
      }
  else:
    pools = {m: np.sort(rest) for m in modalities}
  return PairSplit(
    float(pair_ratio),
    int(seed),
    int(num_examples),
    np.sort(paired),
    pools,
    int(block),
  )


def _columns(
  session: np.ndarray | None,
  time_index: np.ndarray | None,
  num_examples: int,
  block: int,
) -> tuple[np.ndarray, np.ndarray]:
  """``session``, ``time_index`` as ``int64 [N]``; one-line errors."""
  if session is None or time_index is None:
    raise ValueError(
      f"pairs in runs of block={block} windows need each window's session"
      " and time_index."
    )
  session = np.asarray(session, np.int64)
  time_index = np.asarray(time_index, np.int64)
  if session.shape != (num_examples,) or time_index.shape != (num_examples,):
    raise ValueError(
      f"session {session.shape} and time_index {time_index.shape} must both"
      f" have shape ({num_examples},)."
    )
  return session, time_index


def _pair_runs(
  num_pairs: int,
  block: int,
  rng: np.random.Generator,
  session: np.ndarray,
  time_index: np.ndarray,
) -> np.ndarray:
  """``num_pairs`` windows (rounded up to whole runs of L = ``block``).

  Every stretch of consecutive windows of a session is tiled from its start
  into runs of L; ``ceil(num_pairs / L)`` of these runs are drawn at random.
  When more pairs are asked than the runs hold (e.g. ``pair_ratio = 1``
  with stretches that are not multiples of L), every run is taken and the
  windows outside the runs fill the rest.
  """
  if num_pairs == 0:
    return np.zeros(0, np.int64)
  order = np.lexsort((time_index, session))
  sess, time = session[order], time_index[order]
  position = np.arange(len(order))
  first = np.ones(len(order), bool)  # a stretch starts here
  first[1:] = ~continues(sess, time)
  offset = position - np.maximum.accumulate(np.where(first, position, 0))
  stretch = np.cumsum(first) - 1
  length = np.bincount(stretch)[stretch]
  starts = np.flatnonzero((offset % block == 0) & (offset + block <= length))
  picked = starts[rng.permutation(len(starts))[: -(-num_pairs // block)]]
  paired = order[(picked[:, None] + np.arange(block)[None, :]).reshape(-1)]
  if len(paired) < num_pairs:
    rest = rng.permutation(np.setdiff1d(order, paired))
    paired = np.concatenate([paired, rest[: num_pairs - len(paired)]])
  return paired.astype(np.int64)


def save_pair_split(path: str, split: PairSplit) -> None:
  """Writes the split as JSON (indices as lists)."""
  record = dict(
    pair_ratio=split.pair_ratio,
    seed=split.seed,
    num_examples=split.num_examples,
    paired=split.paired.tolist(),
    unpaired={m: v.tolist() for m, v in split.unpaired.items()},
    block=split.block,
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
    int(record.get("block", 1)),
  )


class PairedSource:
  """A Source view of a ``PairSplit`` over a base source (see module doc)."""

  def __init__(
    self, base: Any, split: PairSplit, pair_share: float = 0.0
  ) -> None:
    """Wraps ``base`` (a Source with ``get``) using ``split``.

    ``pair_share``: fraction of synchronized rows to present (module doc;
    0: each pair once).
    """
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
    self.block = int(split.block)
    self._base_columns: dict[str, np.ndarray] | None = None
    self.modalities = tuple(base.modalities)
    self.num_classes = base.num_classes
    rng = np.random.default_rng([split.seed, 13])
    if self.block == 1:
      self._pools = {
        m: rng.permutation(split.unpaired[m]) for m in self.modalities
      }
    else:
      columns = self._columns()
      self._pools = {}
      first = split.unpaired[self.modalities[0]]
      first_order = np.zeros(0, np.int64)
      for k, m in enumerate(self.modalities):
        chunks = _chunks(split.unpaired[m], columns, self.block)
        if k and np.array_equal(split.unpaired[m], first):
          # The same pool (unpaired="all"): the first modality's chunk
          # order turned by k / M of its length, so no row is synchronized.
          turn = k * len(chunks) // len(self.modalities)
          order = np.roll(first_order, -turn)
        else:
          order = rng.permutation(len(chunks))
        if k == 0:
          first_order = order
        self._pools[m] = chunks[order].reshape(-1)
    sizes = [len(self._pools[m]) for m in self.modalities]
    self.num_unpaired = max(sizes) if min(sizes) > 0 else 0
    self.repeats = pair_repeats(
      pair_share, len(split.paired), self.num_unpaired
    )
    #: rows 0 .. num_pair_rows - 1 are the pairs, presented ``repeats`` times.
    self.num_pair_rows = self.repeats * len(split.paired)
    self.num_examples = self.num_pair_rows + self.num_unpaired

  def element_shapes(self) -> dict[str, tuple[int, ...]]:
    """Same as the base source."""
    return self.base.element_shapes()

  def _columns(self) -> dict[str, np.ndarray]:
    """The base source's label/session/time_index columns (read once)."""
    if self._base_columns is None:
      self._base_columns = _base_columns(self.base)
    return self._base_columns

  def _rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Base window of every modality for each example index."""
    num_pairs = len(self.split.paired)
    is_pair = indices < self.num_pair_rows
    rows = {}
    for m in self.modalities:
      pool = self._pools[m]
      unpaired = (
        pool[(indices - self.num_pair_rows) % max(len(pool), 1)]
        if len(pool)
        else np.zeros_like(indices)
      )
      rows[m] = np.where(
        is_pair,
        self.split.paired[indices % num_pairs] if num_pairs else 0,
        unpaired,
      )
    return rows

  def metadata(self) -> dict[str, np.ndarray]:
    """``int [N]`` label, session and time_index of every example.

    Pairs keep their windows' columns. An unpaired row's label is -1; its
    session and time index make a run of rows consecutive only where the
    rows are consecutive windows in every modality (inside one chunk of
    ``block`` rows): each chunk that is a run in every modality is one new
    session, every other unpaired row a session of its own.
    """
    columns = self._columns()
    sessions = max(int(columns["session"].max(initial=-1)) + 1, 0)
    first = sessions * self.repeats
    j = np.arange(self.num_unpaired)
    rows = self._rows(self.num_pair_rows + j)
    ok = np.ones(max(self.num_unpaired - 1, 0), bool)
    for m in self.modalities:
      ok &= continues(
        columns["session"][rows[m]], columns["time_index"][rows[m]]
      )
    # A chunk is a session when every step inside it continues.
    chunk = j // self.block
    broken = np.zeros(int(chunk.max(initial=-1)) + 1, bool)
    np.logical_or.at(broken, chunk[:-1], ~ok & (chunk[:-1] == chunk[1:]))
    whole = ~broken[chunk]
    session = np.where(whole, first + chunk, first + len(broken) + j)
    time = np.where(whole, j % self.block, 0)
    paired = np.tile(self.split.paired, self.repeats)
    # Copy r of the pairs has sessions offset by r * sessions: its runs
    # never continue into another copy's.
    copy = np.repeat(np.arange(self.repeats), len(self.split.paired))
    return {
      "label": np.concatenate(
        [columns["label"][paired], np.full(self.num_unpaired, -1)]
      ).astype(np.int32),
      "session": np.concatenate(
        [columns["session"][paired] + copy * sessions, session]
      ),
      "time_index": np.concatenate([columns["time_index"][paired], time]),
    }

  def get(self, indices: np.ndarray) -> dict[str, Any]:
    """Batch of pairs (index < ``num_pair_rows``) and unsynchronized rows."""
    indices = np.asarray(indices, dtype=np.int64)
    is_pair = indices < self.num_pair_rows
    rows = self._rows(indices)
    first = self.base.get(rows[self.modalities[0]])
    signals = {self.modalities[0]: first["signals"][self.modalities[0]]}
    for m in self.modalities[1:]:
      signals[m] = self.base.get(rows[m])["signals"][m]
    batch = dict(first, signals=signals)
    batch["label"] = np.where(is_pair, first["label"], -1).astype(np.int32)
    batch["paired"] = is_pair
    return batch


def _base_columns(base: Any) -> dict[str, np.ndarray]:
  """``int64`` label, session and time_index of every window of ``base``."""
  columns = window_columns(
    base, needed_for="runs of consecutive windows (data.block > 1)"
  )
  return {
    k: np.asarray(columns[k], np.int64)
    for k in ("label", "session", "time_index")
  }


def _chunks(
  pool: np.ndarray, columns: dict[str, np.ndarray], block: int
) -> np.ndarray:
  """``pool`` in (session, time) order as ``[C, block]`` chunks (no tail)."""
  pool = pool[
    np.lexsort((columns["time_index"][pool], columns["session"][pool]))
  ]
  count = len(pool) // block
  return pool[: count * block].reshape(count, block)


def pairing_config(
  base: ml_collections.ConfigDict,
  *,
  pair_ratio: float,
  subset: Literal["paired", "mixed", "unpaired"] = "mixed",
  unpaired: Literal["disjoint", "all"] = "disjoint",
  split_seed: int = 0,
  record_path: str = "",
  block: int = 1,
  pair_share: float = 0.0,
) -> ml_collections.ConfigDict:
  """A ``config.data`` applying a pair-ratio split to ``base``'s train split.

  Keys: source ("paired"), modalities (copied from base), base, pair_ratio,
  subset, unpaired, split_seed, record_path, block (runs of consecutive
  windows; set it to ``train.sequence_length`` for a sequence sampler),
  pair_share (the fraction of synchronized rows ``"mixed"`` presents, by
  repeating the pairs; 0: each pair once) and
  the loader keys (``msjax.data.loader.loader_options``; those of base are
  not read).
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
      block=int(block),
      pair_share=float(pair_share),
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
  block = int(data_config.get("block", 1))
  path = str(data_config.record_path)
  if path and os.path.exists(path):
    record = load_pair_split(path)
    if (
      record.num_examples != base.num_examples
      or record.pair_ratio != data_config.pair_ratio
      or record.block != block
    ):
      raise ValueError(
        f"pair split {path} was made for {record.num_examples} windows at "
        f"ratio {record.pair_ratio}, block {record.block}; delete it or fix"
        " data.pair_ratio / data.block."
      )
  else:
    columns = _base_columns(base) if block > 1 else {}
    record = pair_ratio_split(
      base.num_examples,
      pair_ratio=data_config.pair_ratio,
      modalities=tuple(data_config.modalities),
      seed=data_config.split_seed,
      unpaired=data_config.unpaired,
      block=block,
      session=columns.get("session"),
      time_index=columns.get("time_index"),
    )
    if path:
      save_pair_split(path, record)
  if data_config.subset == "paired":
    if not hasattr(base, "subset"):
      raise ValueError(f"source {data_config.base.source!r} cannot subset.")
    return base.subset(record.paired)
  if data_config.subset == "unpaired":
    record = record._replace(paired=record.paired[:0])
  return PairedSource(base, record, float(data_config.get("pair_share", 0.0)))
