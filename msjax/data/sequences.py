"""Consecutive-window sequence sampler (the temporal-locality loss).

A batch is ``S`` sequences of ``L`` consecutive windows (same session,
``time_index`` increasing by 1), laid out sequence-major (row ``s * L + l``),
their starts at least ``min_gap`` windows apart when they share a session, so
that sequences are far apart in time. Sampling is a pure function of ``(seed,
step)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = [
  "SequenceIndex",
  "continues",
  "sequence_index",
  "sequence_index_for",
  "sequence_batch_indices",
  "window_columns",
]


class SequenceIndex(NamedTuple):
  """Where runs of L consecutive windows start.

  Attributes:
    order: ``int64 [N]`` example indices sorted by (session, time_index).
    starts: ``int64 [K]`` positions p in ``order`` such that ``order[p:p + L]``
      is one session with time indices t, t + 1, ..., t + L - 1.
    session: ``int64 [K]`` session of each start.
    time: ``int64 [K]`` time index of each start.
    length: L.
  """

  order: np.ndarray
  starts: np.ndarray
  session: np.ndarray
  time: np.ndarray
  length: int


def continues(session: np.ndarray, time_index: np.ndarray) -> np.ndarray:
  """``bool [N - 1]``: window ``k + 1`` continues window ``k``.

  Same session and the next time index, for windows listed in the order to
  check (``int [N]`` each).
  """
  return (session[1:] == session[:-1]) & (time_index[1:] == time_index[:-1] + 1)


def sequence_index(
  session: np.ndarray, time_index: np.ndarray, *, sequence_length: int
) -> SequenceIndex:
  """Finds every run of ``sequence_length`` consecutive windows.

  Args:
    session: ``int [N]`` session id per example.
    time_index: ``int [N]`` window index inside its session.
    sequence_length: L >= 1.

  Returns:
    A ``SequenceIndex``; raises if no run of length L exists.
  """
  session = np.asarray(session, dtype=np.int64)
  time_index = np.asarray(time_index, dtype=np.int64)
  if session.shape != time_index.shape or session.ndim != 1:
    raise ValueError("session and time_index must be 1-D of equal length.")
  if sequence_length < 1:
    raise ValueError(f"sequence_length={sequence_length} must be >= 1.")
  order = np.lexsort((time_index, session))
  sess, time = session[order], time_index[order]
  # step_ok[p]: order[p + 1] continues order[p].
  step_ok = continues(sess, time)
  count = len(order) - sequence_length + 1
  if count <= 0:
    raise ValueError(
      f"{len(order)} windows cannot hold a sequence of {sequence_length}."
    )
  ok = np.ones(count, dtype=bool)
  for offset in range(sequence_length - 1):
    ok &= step_ok[offset : offset + count]
  starts = np.flatnonzero(ok)
  if starts.size == 0:
    raise ValueError(
      f"no session holds {sequence_length} consecutive windows; lower "
      "sequence_length or check session/time_index."
    )
  return SequenceIndex(
    order, starts, sess[starts], time[starts], sequence_length
  )


def window_columns(
  source: Any, *, needed_for: str = "the sequence sampler"
) -> dict[str, np.ndarray]:
  """A source's per-window columns, checked to hold session and time_index.

  Uses ``source.metadata()`` when the source has it (no signals read), else
  one ``get`` of every example. ``needed_for`` names the caller in the
  one-line error.
  """
  if hasattr(source, "metadata"):
    columns = source.metadata()
  else:
    columns = source.get(np.arange(source.num_examples))
  if "session" not in columns or "time_index" not in columns:
    raise ValueError(
      f"{needed_for} needs session and time_index per window; give the"
      " source subject/session ids and timestamps."
    )
  return columns


def sequence_index_for(source: Any, sequence_length: int) -> SequenceIndex:
  """``sequence_index`` of a source's ``session`` / ``time_index`` columns.

  The columns come from :func:`window_columns`.
  """
  columns = window_columns(source)
  return sequence_index(
    columns["session"], columns["time_index"], sequence_length=sequence_length
  )


def sequence_batch_indices(
  index: SequenceIndex,
  *,
  num_sequences: int,
  seed: int,
  step: int,
  min_gap: int | None = None,
) -> np.ndarray:
  """Example indices of S sequences of L windows, sequence-major ``[S * L]``.

  Starts are drawn in the order of ``default_rng([seed, step]).permutation``
  and accepted greedily when every accepted start of the same session is at
  least ``min_gap`` windows away (default 2 L: no overlap plus a gap of L).

  Args:
    index: from ``sequence_index``.
    num_sequences: S.
    seed: data seed.
    step: training step (the resumable position).
    min_gap: minimum start distance inside one session.

  Returns:
    ``int64 [S * L]``; raises if S far-apart sequences do not exist.
  """
  length = index.length
  gap = 2 * length if min_gap is None else min_gap
  rng = np.random.default_rng([int(seed), int(step), 7])
  picked: list[int] = []
  taken: dict[int, list[int]] = {}
  for k in rng.permutation(len(index.starts)):
    sess, time = int(index.session[k]), int(index.time[k])
    if any(abs(time - t) < gap for t in taken.get(sess, ())):
      continue
    taken.setdefault(sess, []).append(time)
    picked.append(int(index.starts[k]))
    if len(picked) == num_sequences:
      break
  if len(picked) < num_sequences:
    raise ValueError(
      f"only {len(picked)} sequences {gap} windows apart exist, "
      f"{num_sequences} asked; lower the batch size or min_gap."
    )
  positions = np.asarray(picked)[:, None] + np.arange(length)[None, :]
  return index.order[positions.reshape(-1)]
