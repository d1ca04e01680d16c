"""Bring-your-own data: a ``.npz`` file of windows, usable by every method.

File format (``numpy.savez``):

* one float array per modality, key = modality name, shape ``[N, C, T]``
  (or ``[N, C, F, S]`` spectrograms); all modalities share N.
* optional ``label`` (``int [N]``, -1 = unlabelled), ``subject`` (``int [N]``,
  subject / session id), ``timestamp`` (``[N]``, window start time in any unit)
  or ``time_index`` (``int [N]``, window index inside its session). Key names
  are configurable (``label_key``, ``session_key``, ``time_key``).

Without ``time_index``, windows are numbered by the rank of their timestamp
inside each session (0, 1, 2, ...), which is the consecutive-window order the
sequence sampler needs.

Splits (``config.data.split_by``): ``"file"`` reads ``path`` with ``{split}``
replaced by the split name (``data_{split}.npz``); ``"subject"`` holds out the
subjects listed in ``test_subjects`` (ids as stored in the file), or, when that
is empty, a ``test_fraction`` of the subjects (seeded by ``split_seed``), as
"test" ("val" is the same as "test"); ``"example"`` holds out a fraction of
windows.

Spectrograms (``config.data.representation = "stft"``): raw ``[N, C, T]``
windows are turned into ``[N, C', F, S]`` spectrograms once, when the file is
read, with :func:`msjax.data.signal.stft` (Hann frames of ``stft.segment_s``
every ``stft.hop_s`` seconds at ``sample_rate_hz[m]``; ``stft.output`` as the
synthetic source: ``"real_imag"`` gives ``C' = 2C``). That is what InfoMAE and
the spectrogram baselines read. docs/byod.md walks through a whole study.

Memory: with ``representation = "raw"``, float32 modality arrays stored
uncompressed (``numpy.savez``, ``save_npz``) are memory-mapped from the
archive, not read: a batch reads only its rows, and a file larger than the
host's memory trains. Compressed members (``numpy.savez_compressed``), other
dtypes and spectrogram inputs are read into memory.
"""

from __future__ import annotations

import os
import zipfile

import ml_collections
import numpy as np

from msjax.data import signal
from msjax.data.loader import loader_options
from msjax.data.sources import ArraySource

__all__ = ["default_config", "load_npz", "save_npz", "split_members"]

_SPLITS = ("train", "val", "test")


def default_config(
  path: str = "", modalities: tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
  """The ``config.data`` section of an npz source.

  Args:
    path: the npz file (or a pattern containing ``{split}``).
    modalities: modality keys of the file to use, in order.

  Returns:
    ConfigDict with keys source, path, modalities, split_by, test_subjects,
    test_fraction, split_seed, num_classes (0 = infer), label_key,
    session_key, time_key, representation ("raw" or "stft"),
    sample_rate_hz (modality -> Hz, for "stft") and stft (segment_s,
    hop_s, output).
  """
  return ml_collections.ConfigDict(
    dict(
      source="npz",
      path=path,
      modalities=tuple(modalities),
      split_by="subject",
      test_subjects=(),
      test_fraction=0.25,
      split_seed=0,
      num_classes=0,
      label_key="label",
      session_key="subject",
      time_key="timestamp",
      representation="raw",
      sample_rate_hz={},
      stft=dict(segment_s=1.0, hop_s=0.5, output="real_imag"),
      **loader_options(),
    )
  )


def save_npz(
  path: str, signals: dict[str, np.ndarray], **columns: np.ndarray
) -> None:
  """Writes windows in the format above (``columns``: label, subject, ...)."""
  overlap = set(signals) & set(columns)
  if overlap:
    raise ValueError(f"modality names {overlap} clash with column names.")
  np.savez(path, **signals, **columns)


def split_members(
  groups: np.ndarray, *, test_fraction: float, seed: int, split: str
) -> np.ndarray:
  """Indices of ``split`` when holding out whole groups.

  The sorted unique groups are permuted with ``default_rng(seed)``; the first
  ``max(1, round(test_fraction * G))`` are "test" (also "val"), the rest
  "train".

  Args:
    groups: ``[N]`` group id per example (subject, or arange(N) per example).
    test_fraction: fraction of groups held out, in (0, 1).
    seed: split seed.
    split: "train", "val" or "test".

  Returns:
    ``int64 [n]`` sorted example indices.
  """
  if split not in _SPLITS:
    raise ValueError(f"split {split!r} unknown; use one of {_SPLITS}.")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction={test_fraction} must be in (0, 1).")
  unique = np.unique(groups)
  if len(unique) < 2:
    raise ValueError(
      "a held-out split needs at least 2 subjects; use split_by='example'."
    )
  order = np.random.default_rng(seed).permutation(unique)
  num_test = min(len(unique) - 1, max(1, round(test_fraction * len(unique))))
  held = np.isin(groups, order[:num_test])
  return np.flatnonzero(held if split != "train" else ~held)


def _held_out(
  groups: np.ndarray, test_subjects: tuple, split: str, file_path: str
) -> np.ndarray:
  """Indices of ``split`` when the test subjects are named."""
  if split not in _SPLITS:
    raise ValueError(f"split {split!r} unknown; use one of {_SPLITS}.")
  named = np.asarray(test_subjects)
  missing = sorted(set(named.tolist()) - set(np.unique(groups).tolist()))
  if missing:
    raise ValueError(
      f"test_subjects {missing} are not subjects of {file_path} (it has"
      f" {np.unique(groups).tolist()[:10]}...)."
    )
  held = np.isin(groups, named)
  if held.all():
    raise ValueError(
      "test_subjects hold out every subject: leave at least one to train on."
    )
  return np.flatnonzero(held if split != "train" else ~held)


def _spectrograms(
  arrays: dict[str, np.ndarray],
  modalities: tuple[str, ...],
  data_config: ml_collections.ConfigDict,
  file_path: str,
) -> dict[str, np.ndarray]:
  """``[N, C, T]`` windows -> STFT ``[N, C', F, S]`` per modality."""
  out = {}
  rates = dict(data_config.sample_rate_hz)
  for m in modalities:
    x = arrays[m]
    if x.ndim != 3:
      raise ValueError(
        f"representation='stft' needs raw [N, C, T] windows; {m!r} in"
        f" {file_path} has shape {x.shape}."
      )
    if m not in rates or rates[m] <= 0:
      raise ValueError(
        f"representation='stft' needs config.data.sample_rate_hz[{m!r}]"
        " (samples per second of that stream)."
      )
    segment = int(round(data_config.stft.segment_s * rates[m]))
    hop = int(round(data_config.stft.hop_s * rates[m]))
    if not 2 <= segment <= x.shape[-1] or hop < 1:
      raise ValueError(
        f"stft.segment_s={data_config.stft.segment_s} and hop_s="
        f"{data_config.stft.hop_s} at {rates[m]} Hz do not fit {m!r}'s"
        f" {x.shape[-1]}-sample windows."
      )
    out[m] = signal.stft(
      x, nfft=segment, hop=hop, output=data_config.stft.output
    )
  return out


def _time_rank(session: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
  order = np.lexsort((timestamp, session))
  rank = np.empty(len(order), dtype=np.int64)
  sorted_sess = session[order]
  starts = np.flatnonzero(np.r_[True, sorted_sess[1:] != sorted_sess[:-1]])
  first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
  rank[order] = np.arange(len(order)) - first
  return rank


def _checked_labels(
  label: np.ndarray | None, key: str, file_path: str
) -> np.ndarray | None:
  """Integer labels, or a ValueError that says what is wrong with them."""
  if label is None:
    return None
  if label.dtype.kind in "USO":
    examples = ", ".join(repr(str(v)) for v in np.unique(label)[:3])
    raise ValueError(
      f"labels {key!r} in {file_path} are strings ({examples}, ...); labels"
      " must be integers 0..C-1 (-1 = unlabelled): map each class name to an"
      " integer."
    )
  if label.dtype.kind == "b":
    return label.astype(np.int64)
  if label.dtype.kind == "f":
    if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
      raise ValueError(
        f"labels {key!r} in {file_path} are not whole numbers; labels must be"
        " integers 0..C-1 (-1 = unlabelled)."
      )
    return label.astype(np.int64)
  if label.dtype.kind not in "iu":
    raise ValueError(
      f"labels {key!r} in {file_path} have dtype {label.dtype}; labels must"
      " be integers 0..C-1 (-1 = unlabelled)."
    )
  if label.ndim != 1:
    raise ValueError(
      f"labels {key!r} in {file_path} have shape {label.shape}; expected one"
      " integer per window ([N])."
    )
  return label


def _mapped_member(path: str, key: str) -> np.ndarray | None:
  """Member ``key`` of an npz archive as a read-only memmap, if it can be.

  Only an uncompressed, C-ordered float32 ``.npy`` member can: its bytes lie
  in the archive as they are in memory. ``None`` otherwise.
  """
  with zipfile.ZipFile(path) as archive:
    try:
      info = archive.getinfo(f"{key}.npy")
    except KeyError:
      return None
    if info.compress_type != zipfile.ZIP_STORED:
      return None
    with archive.open(info) as member:
      version = np.lib.format.read_magic(member)
      if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(member)
      elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(member)
      else:
        return None
      npy_header = member.tell()
  shape, fortran_order, dtype = header
  if fortran_order or dtype != np.float32 or not shape:
    return None
  with open(path, "rb") as raw:  # the local file header sits before the data
    raw.seek(info.header_offset)
    local = raw.read(30)
  name_len = int.from_bytes(local[26:28], "little")
  extra_len = int.from_bytes(local[28:30], "little")
  offset = info.header_offset + 30 + name_len + extra_len + npy_header
  return np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=shape)


def load_npz(data_config: ml_collections.ConfigDict, split: str) -> ArraySource:
  """The ``split`` of the npz source ``data_config`` describes."""
  path = str(data_config.path)
  file_path = (
    path.format(split=split) if data_config.split_by == "file" else path
  )
  if not path or not os.path.exists(file_path):
    raise FileNotFoundError(
      f"npz file {file_path!r} not found; set config.data.path to a .npz "
      "with one [N, C, T] array per modality."
    )
  if not zipfile.is_zipfile(file_path):
    raise ValueError(
      f"{file_path} is not an .npz archive (not a zip file); write it with"
      " numpy.savez or msjax.data.npz.save_npz."
    )
  mapped = {}
  if data_config.representation == "raw":
    for m in data_config.modalities:
      array = _mapped_member(file_path, m)
      if array is not None:
        mapped[m] = array
  try:
    with np.load(file_path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files if k not in mapped}
    arrays.update(mapped)
  except ValueError as error:
    if "pickle" not in str(error):
      raise
    raise ValueError(
      f"{file_path} holds object arrays (pickled Python objects), which are"
      " not read; store labels as integers and signals as float arrays."
    ) from None
  modalities = tuple(data_config.modalities)
  if not modalities:
    raise ValueError(
      f"config.data.modalities is empty; list keys of {file_path} to use."
    )
  columns = {
    "label": _checked_labels(
      arrays.get(data_config.label_key), data_config.label_key, file_path
    ),
    "session": arrays.get(data_config.session_key),
  }
  time_index = arrays.get("time_index")
  if time_index is None and data_config.time_key in arrays:
    session = columns["session"]
    session = (
      np.zeros(len(arrays[data_config.time_key]), np.int64)
      if session is None
      else session
    )
    time_index = _time_rank(session, arrays[data_config.time_key])
  size = len(arrays[modalities[0]]) if modalities[0] in arrays else 0
  if data_config.split_by == "file":
    keep = np.arange(size)
  elif data_config.split_by in ("subject", "example"):
    if data_config.split_by == "subject":
      if columns["session"] is None:
        raise ValueError(
          f"split_by='subject' needs a {data_config.session_key!r} array in "
          f"{file_path}; add it or use split_by='example'."
        )
      groups = columns["session"]
    else:
      groups = np.arange(size)
    if data_config.split_by == "subject" and data_config.test_subjects:
      keep = _held_out(
        groups, tuple(data_config.test_subjects), split, file_path
      )
    else:
      keep = split_members(
        groups,
        test_fraction=data_config.test_fraction,
        seed=data_config.split_seed,
        split=split,
      )
  else:
    raise ValueError(
      f"split_by={data_config.split_by!r} unknown; use file, subject or "
      "example."
    )
  num_classes = int(data_config.num_classes) or None
  signals = {m: arrays[m] for m in modalities if m in arrays}
  if data_config.representation == "stft":
    signals = _spectrograms(signals, tuple(signals), data_config, file_path)
  elif data_config.representation != "raw":
    raise ValueError(
      f"data.representation={data_config.representation!r} unknown; use"
      " 'raw' or 'stft'."
    )
  source = ArraySource(
    signals,
    modalities=modalities,
    label=columns["label"],
    session=columns["session"],
    time_index=time_index,
    num_classes=num_classes,
    name=file_path,
  )  # memory-mapped signals stay mapped; subset keeps them so
  return source.subset(keep) if data_config.split_by != "file" else source
