"""TensorBoard scalar event files without TensorFlow or protobuf.

An event file is a sequence of TFRecord frames, each holding one serialized `tensorboard.Event` proto:
  frame = uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)   (little endian)
Only the fields scalars need are written:
  Event:   wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5 (Summary)
  Summary: value = 1 (repeated Value)
  Value:   tag = 1 (string), simple_value = 2 (float)
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Mapping
from typing import BinaryIO

_CRC32C_POLY = 0x82F63B78  # Castagnoli polynomial, bit-reversed.
_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
    table.append(crc)
  return tuple(table)


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The rotated-and-offset CRC that TFRecord frames store."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord_frame(data: bytes) -> bytes:
  """One TFRecord frame around `data`."""
  length = struct.pack("<Q", len(data))
  return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def _varint(value: int) -> bytes:
  if value < 0:
    value += 1 << 64  # int64 two's complement, as protobuf encodes negative int64.
  out = bytearray()
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint((field << 3) | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _key(field, 2) + _varint(len(payload)) + payload


def encode_event(
  *, wall_time: float, step: int = 0, file_version: str | None = None, scalars: Mapping[str, float] | None = None
) -> bytes:
  """Serializes a `tensorboard.Event` with a version string or a summary of scalar values."""
  out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(int(step))
  if file_version is not None:
    out += _length_delimited(3, file_version.encode())
  if scalars:
    summary = b""
    for tag, value in scalars.items():
      value_msg = _length_delimited(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(value))
      summary += _length_delimited(1, value_msg)
    out += _length_delimited(5, summary)
  return out


class EventFileWriter:
  """Appends scalar summaries to a new `events.out.tfevents.*` file in `logdir`."""

  def __init__(self, logdir: str | os.PathLike):
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    self.path = os.path.join(logdir, f"events.out.tfevents.{int(now)}.ssd_jax.{os.getpid()}")
    self._file: BinaryIO = open(self.path, "ab")
    self._file.write(tfrecord_frame(encode_event(wall_time=now, file_version="brain.Event:2")))
    self._file.flush()

  def add_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes one event holding every (tag, value) of `scalars` at `step`."""
    event = encode_event(wall_time=time.time(), step=step, scalars=scalars)
    self._file.write(tfrecord_frame(event))

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()
