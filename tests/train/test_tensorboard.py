"""Event files read back with an independent TFRecord + protobuf decoder."""

import struct

import pytest

from msjax.train import tensorboard


def _crc32c_bitwise(data: bytes) -> int:
  """CRC-32C, bit by bit (no table), independent of the module's version."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
  crc = _crc32c_bitwise(data)
  return ((crc >> 15 | crc << 17) + 0xA282EAD8) % 2**32


def _records(blob: bytes) -> list[bytes]:
  out, offset = [], 0
  while offset < len(blob):
    header = blob[offset : offset + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", blob[offset + 8 : offset + 12])
    assert header_crc == _masked(header)
    data = blob[offset + 12 : offset + 12 + length]
    (data_crc,) = struct.unpack(
      "<I", blob[offset + 12 + length : offset + 16 + length]
    )
    assert data_crc == _masked(data)
    out.append(data)
    offset += 16 + length
  return out


def _fields(message: bytes) -> list[tuple[int, int, object]]:
  """Decodes a protobuf message into (field, wire type, raw value)."""
  out, offset = [], 0

  def varint():
    nonlocal offset
    value = shift = 0
    while True:
      byte = message[offset]
      offset += 1
      value |= (byte & 0x7F) << shift
      shift += 7
      if not byte & 0x80:
        return value

  while offset < len(message):
    key = varint()
    field, wire = key >> 3, key & 7
    if wire == 0:
      out.append((field, wire, varint()))
    elif wire == 1:
      out.append(
        (field, wire, struct.unpack("<d", message[offset : offset + 8])[0])
      )
      offset += 8
    elif wire == 5:
      out.append(
        (field, wire, struct.unpack("<f", message[offset : offset + 4])[0])
      )
      offset += 4
    elif wire == 2:
      size = varint()
      out.append((field, wire, message[offset : offset + size]))
      offset += size
    else:
      raise AssertionError(f"unexpected wire type {wire}")
  return out


def test_crc32c_known_value():
  assert tensorboard.crc32c(b"123456789") == 0xE3069283
  assert tensorboard.crc32c(b"hello msjax") == _crc32c_bitwise(b"hello msjax")


def test_event_file_round_trip(tmp_path):
  writer = tensorboard.EventFileWriter(str(tmp_path))
  writer.write_scalars(7, {"loss": 1.5, "lr/main": 0.25})
  writer.write_scalars(2**40, {"loss": -3.0})
  writer.close()
  (path,) = tmp_path.glob("events.out.tfevents.*")
  events = [_fields(r) for r in _records(path.read_bytes())]
  assert len(events) == 3
  first = {f: v for f, _, v in events[0]}
  assert first[3] == b"brain.Event:2" and first[1] > 1e9
  decoded = []
  for event in events[1:]:
    fields = {f: v for f, _, v in event}
    scalars = {}
    for field, _, value in _fields(fields[5]):
      assert field == 1
      entry = {f: v for f, _, v in _fields(value)}
      scalars[entry[1].decode()] = entry[2]
    decoded.append((fields[2], scalars))
  assert decoded == [
    (7, {"loss": 1.5, "lr/main": 0.25}),
    (2**40, {"loss": -3.0}),
  ]


def test_corrupted_record_is_detected(tmp_path):
  record = bytearray(tensorboard.frame_record(b"payload"))
  record[14] ^= 1
  with pytest.raises(AssertionError):
    _records(bytes(record))
