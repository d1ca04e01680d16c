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


def _scalars(logdir):
  """(step, tag) -> [values] over every event file, read independently."""
  seen = {}
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    for record in _records(path.read_bytes()):
      fields = {f: v for f, _, v in _fields(record)}
      if 5 not in fields:
        continue
      for _, _, value in _fields(fields[5]):
        entry = {f: v for f, _, v in _fields(value)}
        seen.setdefault((fields[2], entry[1].decode()), []).append(entry[2])
  return seen


def test_resume_writes_each_step_once_and_eval_scores(tmp_path):
  import shutil  # noqa: PLC0415

  from msjax.train import config_lib  # noqa: PLC0415
  from msjax.train.loop import train_and_evaluate  # noqa: PLC0415
  from tests.train import toy  # noqa: PLC0415

  config = toy.get_config()
  config_lib.apply_overrides(
    config,
    [
      "train.log_every=1",
      "checkpoint.keep=3",
      "eval.probe_steps=5",
      "eval.random_baseline=false",
    ],
  )

  def run():
    return train_and_evaluate(
      config, str(tmp_path), method=toy.METHOD, make_source=toy.make_source
    )

  run()
  # A run killed after logging steps 5 and 6 but before checkpoint 6 landed.
  shutil.rmtree(tmp_path / "checkpoints" / "6")
  outcome = run()  # resumes at 4: logs 5 and 6 again, evaluates again
  seen = _scalars(tmp_path / "tensorboard")
  train_points = {k: v for k, v in seen.items() if k[1] == "loss"}
  assert sorted(step for step, _ in train_points) == [1, 2, 3, 4, 5, 6]
  assert all(len(v) == 1 for v in train_points.values()), train_points
  accuracy = seen[(6, "eval/fused/accuracy")]
  assert accuracy[-1] == pytest.approx(
    outcome["eval"]["trained"]["fused"]["accuracy"]
  )
  assert (6, "eval/a/macro_f1") in seen
  assert (6, "eval/retrieval/a|b/class_map") in seen
  # Evaluating again replaces the scores at that step.
  from msjax.train import evaluation  # noqa: PLC0415

  tensorboard.write_eval(
    tmp_path / "tensorboard",
    evaluation.evaluate(
      str(tmp_path),
      config=config,
      method=toy.METHOD,
      make_source=toy.make_source,
    ),
  )
  again = _scalars(tmp_path / "tensorboard")
  assert len(again[(6, "eval/fused/accuracy")]) == 1


def test_drop_events_after_keeps_earlier_steps(tmp_path):
  writer = tensorboard.EventFileWriter(str(tmp_path))
  for step in range(1, 6):
    writer.write_scalars(step, {"loss": float(step)})
  writer.close()
  assert tensorboard.drop_events_after(tmp_path, 3) == 2
  assert tensorboard.drop_events_after(tmp_path, 3) == 0
  seen = _scalars(tmp_path)
  assert seen == {(s, "loss"): [float(s)] for s in (1, 2, 3)}
  (path,) = tmp_path.glob("events.out.tfevents.*")
  assert {f for f, _, _ in _fields(_records(path.read_bytes())[0])} >= {3}
