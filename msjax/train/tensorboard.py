"""TensorBoard event files without TensorFlow.

An event file is a sequence of TFRecords: ``uint64 length``, ``uint32
masked_crc32c(length)``, ``data``, ``uint32 masked_crc32c(data)`` (all
little-endian), each ``data`` a serialised ``tensorflow.Event`` protobuf. The
few protobuf fields needed for scalars are encoded by hand:

* ``Event``: ``wall_time`` (1, double), ``step`` (2, int64), ``file_version``
  (3, string), ``summary`` (5, message);
* ``Summary``: ``value`` (1, repeated message);
* ``Summary.Value``: ``tag`` (1, string), ``simple_value`` (2, float).

A resumed run logs again the steps after its checkpoint; before it starts,
:func:`drop_events_after` removes those steps' events from the event files,
so TensorBoard shows every step once. :func:`write_eval` adds the
evaluation's scores (``eval/<embedding>/<metric>``, and ``eval_random/...``
for the random-encoder baseline) at the evaluated checkpoint's step.
"""

import os
import pathlib
import socket
import struct
import time

__all__ = [
  "EventFileWriter",
  "crc32c",
  "decode_event",
  "drop_events_after",
  "encode_event",
  "eval_scalars",
  "frame_record",
  "masked_crc32c",
  "read_records",
  "read_scalars",
  "write_eval",
]

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected.


def _make_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The TFRecord checksum: the CRC rotated right by 15 plus a constant."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
  """One TFRecord holding ``data``."""
  length = struct.pack("<Q", len(data))
  return (
    length
    + struct.pack("<I", masked_crc32c(length))
    + data
    + struct.pack("<I", masked_crc32c(data))
  )


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # negative int64 as two's complement
  out = bytearray()
  while True:
    low = value & 0x7F
    value >>= 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint(field << 3 | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _key(field, 2) + _varint(len(payload)) + payload


def encode_event(
  wall_time: float,
  *,
  step: int | None = None,
  scalars: dict[str, float] | None = None,
  file_version: str | None = None,
) -> bytes:
  """Serialises an ``Event`` with scalar summaries or a file version.

  Args:
    wall_time: seconds since the epoch.
    step: the global step.
    scalars: tag -> value, written as ``simple_value``.
    file_version: e.g. ``"brain.Event:2"`` (the first event of a file).

  Returns:
    The protobuf bytes.
  """
  out = _key(1, 1) + struct.pack("<d", wall_time)
  if step is not None:
    out += _key(2, 0) + _varint(step)
  if file_version is not None:
    out += _length_delimited(3, file_version.encode())
  if scalars:
    summary = b"".join(
      _length_delimited(
        1,
        _length_delimited(1, tag.encode())
        + _key(2, 5)
        + struct.pack("<f", float(value)),
      )
      for tag, value in scalars.items()
    )
    out += _length_delimited(5, summary)
  return out


class EventFileWriter:
  """Appends scalar events to ``<logdir>/events.out.tfevents.<time>.<host>``.

  Attributes:
    path: the event file.
  """

  def __init__(self, logdir: str) -> None:
    """Creates the file and writes the ``file_version`` event."""
    directory = pathlib.Path(logdir)
    directory.mkdir(parents=True, exist_ok=True)
    name = (
      f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}"
      f".{os.getpid()}"
    )
    self.path = directory / name
    self._file = open(self.path, "ab")  # noqa: SIM115 (closed in close())
    self._file.write(
      frame_record(encode_event(time.time(), file_version="brain.Event:2"))
    )
    self._file.flush()

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    """Writes one event holding every scalar of ``step``."""
    event = encode_event(time.time(), step=step, scalars=scalars)
    self._file.write(frame_record(event))
    self._file.flush()

  def close(self) -> None:
    """Closes the file."""
    self._file.close()


def read_records(path: pathlib.Path) -> list[bytes]:
  """The ``data`` of every complete, intact record of an event file.

  Reading stops at a truncated or corrupt record (e.g. a write cut short).
  """
  blob = pathlib.Path(path).read_bytes()
  records, offset = [], 0
  while offset + 12 <= len(blob):
    header = blob[offset : offset + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", blob[offset + 8 : offset + 12])
    end = offset + 12 + length + 4
    if header_crc != masked_crc32c(header) or end > len(blob):
      break
    data = blob[offset + 12 : offset + 12 + length]
    (data_crc,) = struct.unpack("<I", blob[end - 4 : end])
    if data_crc != masked_crc32c(data):
      break
    records.append(data)
    offset = end
  return records


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
  value, shift = 0, 0
  while True:
    byte = data[offset]
    offset += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return value, offset


def _fields(data: bytes) -> list[tuple[int, int, object]]:
  """(field, wire type, value) of a protobuf message (types 0, 1, 2, 5)."""
  out, offset = [], 0
  while offset < len(data):
    key, offset = _read_varint(data, offset)
    field, wire = key >> 3, key & 7
    if wire == 0:
      value, offset = _read_varint(data, offset)
    elif wire == 1:
      value, offset = data[offset : offset + 8], offset + 8
    elif wire == 2:
      size, offset = _read_varint(data, offset)
      value, offset = data[offset : offset + size], offset + size
    elif wire == 5:
      value, offset = data[offset : offset + 4], offset + 4
    else:
      raise ValueError(f"unsupported protobuf wire type {wire}")
    out.append((field, wire, value))
  return out


def decode_event(data: bytes) -> dict:
  """``{"wall_time", "step" (or None), "scalars": {tag: value}}``."""
  event = {"wall_time": 0.0, "step": None, "scalars": {}}
  for field, _, value in _fields(data):
    if field == 1:
      event["wall_time"] = struct.unpack("<d", value)[0]
    elif field == 2:
      step = value - (1 << 64) if value >= 1 << 63 else value
      event["step"] = step
    elif field == 5:
      for sub, _, item in _fields(value):
        if sub != 1:
          continue
        tag, number = None, None
        for inner, _, part in _fields(item):
          if inner == 1:
            tag = part.decode()
          elif inner == 2:
            number = struct.unpack("<f", part)[0]
        if tag is not None and number is not None:
          event["scalars"][tag] = number
  return event


def read_scalars(logdir: str | pathlib.Path) -> list[tuple[int, str, float]]:
  """Every ``(step, tag, value)`` in the event files of ``logdir``."""
  out = []
  for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
    for data in read_records(path):
      event = decode_event(data)
      for tag, value in event["scalars"].items():
        out.append((event["step"], tag, value))
  return out


def _drop_events(logdir: str | pathlib.Path, drop: object) -> int:
  """Rewrites ``logdir``'s event files without the events ``drop`` selects."""
  removed = 0
  for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
    records = read_records(path)
    keep = [r for r in records if not drop(decode_event(r))]
    size = sum(len(frame_record(r)) for r in records)
    if len(keep) == len(records) and size == path.stat().st_size:
      continue
    removed += len(records) - len(keep)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(b"".join(frame_record(r) for r in keep))
    os.replace(temporary, path)
  return removed


def drop_events_after(logdir: str | pathlib.Path, step: int) -> int:
  """Removes events with a step above ``step`` from ``logdir``'s files.

  A run resumed from the checkpoint at ``step`` writes the later steps again;
  without this TensorBoard would show them twice. Files are rewritten
  atomically (a temporary file, then a rename).

  Returns:
    The number of events removed.
  """
  return _drop_events(
    logdir, lambda e: e["step"] is not None and e["step"] > step
  )


def eval_scalars(results: dict) -> dict[str, float]:
  """``eval/<embedding>/<metric>`` (and ``eval_random/...``) of ``evaluate``.

  Cross-modal retrieval, when evaluated, is ``eval/retrieval/<a|b>/<metric>``
  (``eval_random/retrieval/...`` for the random encoder).
  """
  out = {}
  for prefix, key in (("eval", "trained"), ("eval_random", "random")):
    for name, metrics in (results.get(key) or {}).items():
      for metric, value in metrics.items():
        out[f"{prefix}/{name}/{metric}"] = float(value)
  for prefix, key in (
    ("eval/retrieval", "retrieval"),
    ("eval_random/retrieval", "retrieval_random"),
  ):
    for pair, metrics in (results.get(key) or {}).items():
      if pair != "chance":
        for metric, value in metrics.items():
          out[f"{prefix}/{pair}/{metric}"] = float(value)
  return out


def write_eval(logdir: str | pathlib.Path, results: dict) -> None:
  """Writes the evaluation's scores at the evaluated checkpoint's step.

  Scores an earlier evaluation wrote at that step are replaced.
  """
  scalars = eval_scalars(results)
  if not scalars:
    return
  step = int(results["step"])
  _drop_events(  # an evaluation run again replaces the earlier scores
    logdir,
    lambda e: (
      e["step"] == step
      and e["scalars"]
      and all(t.startswith(("eval/", "eval_random/")) for t in e["scalars"])
    ),
  )
  writer = EventFileWriter(str(logdir))
  try:
    writer.write_scalars(step, scalars)
  finally:
    writer.close()
