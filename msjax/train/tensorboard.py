"""TensorBoard event files without TensorFlow.

An event file is a sequence of TFRecords: ``uint64 length``, ``uint32
masked_crc32c(length)``, ``data``, ``uint32 masked_crc32c(data)`` (all
little-endian), each ``data`` a serialised ``tensorflow.Event`` protobuf. The
few protobuf fields needed for scalars are encoded by hand:

* ``Event``: ``wall_time`` (1, double), ``step`` (2, int64), ``file_version``
  (3, string), ``summary`` (5, message);
* ``Summary``: ``value`` (1, repeated message);
* ``Summary.Value``: ``tag`` (1, string), ``simple_value`` (2, float).
"""

import os
import pathlib
import socket
import struct
import time

__all__ = [
  "EventFileWriter",
  "crc32c",
  "encode_event",
  "frame_record",
  "masked_crc32c",
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
