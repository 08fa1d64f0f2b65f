"""Sample records on disk: resumable, per-process ArrayRecord shards.

Layout of a record directory (shared by all hosts)::

  records-p{process:03d}-s{shard:05d}.array_record        complete shards
  records-p{process:03d}-s{shard:05d}.array_record.tmp    a shard being written

Each process writes only its own shards. A shard is written under its temporary name
and renamed to the final name when closed; the rename is atomic on a POSIX file system,
so a killed job leaves complete shards plus at most one temporary per process, which the
next writer for that process deletes. Resuming is: `done = completed_keys(dir)`, skip
those `(task_id, sample_index)` keys, and write the rest with a new writer; the union of
complete shards then holds every record exactly once.

`SampleRecord` is re-exported here with the shard I/O, and `is_degenerate` with the
filters that decide which records are written.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Iterator

import grain
from array_record.python import array_record_module

from ssd_jax.data.degenerate import filter_degenerate, is_degenerate
from ssd_jax.data.sample_record import SampleRecord

__all__ = [
  "RecordShardWriter",
  "SampleRecord",
  "complete_shard_paths",
  "completed_keys",
  "filter_degenerate",
  "is_degenerate",
  "read_records",
  "record_dataset",
  "shard_name",
]

_SHARD_RE = re.compile(r"^records-p(\d{3,})-s(\d{5,})\.array_record$")
_TEMP_SUFFIX = ".tmp"
# One record per chunk, so a data source can read any record without decoding neighbours.
_WRITER_OPTIONS = "group_size:1"


def shard_name(process_index: int, shard_index: int) -> str:
  """File name of a complete shard, e.g. 'records-p003-s00012.array_record'."""
  return f"records-p{process_index:03d}-s{shard_index:05d}.array_record"


def _parse_shard(name: str) -> tuple[int, int] | None:
  match = _SHARD_RE.match(name)
  return (int(match.group(1)), int(match.group(2))) if match else None


def complete_shard_paths(directory: str | os.PathLike) -> list[pathlib.Path]:
  """Complete shards of all processes, sorted by (process, shard); temporaries excluded."""
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    return []
  found = [(_parse_shard(p.name), p) for p in directory.iterdir()]
  return [p for ids, p in sorted((ids, p) for ids, p in found if ids is not None)]


class RecordShardWriter:
  """Writes one process's records into numbered shards of `records_per_shard` records.

  Numbering continues after this process's existing complete shards, so a resumed job
  never overwrites finished work. Not safe for two writers with the same process index
  at once. Use as a context manager: leaving the block, normally or by an exception,
  closes the open shard, since every record already in it was written whole.

  Args:
    directory: the record directory (created if missing).
    process_index: this host's index (`jax.process_index()`).
    records_per_shard: records per shard before it is closed and the next begins.
  """

  def __init__(self, directory: str | os.PathLike, process_index: int, records_per_shard: int):
    if process_index < 0:
      raise ValueError(f"process_index must be >= 0, got {process_index}")
    if records_per_shard < 1:
      raise ValueError(f"records_per_shard must be >= 1, got {records_per_shard}")
    self._directory = pathlib.Path(directory)
    self._directory.mkdir(parents=True, exist_ok=True)
    self._process_index = process_index
    self._records_per_shard = records_per_shard
    prefix = f"records-p{process_index:03d}-"
    for stale in self._directory.glob(prefix + "*" + _TEMP_SUFFIX):
      stale.unlink()  # left by a killed writer of this process; its records are redone
    own = [
      ids[1] for ids in map(_parse_shard, os.listdir(self._directory)) if ids is not None and ids[0] == process_index
    ]
    self._next_shard = max(own, default=-1) + 1
    self._writer = None
    self._temp_path: pathlib.Path | None = None
    self._in_shard = 0
    self._keys_written: set[tuple[str, int]] = set()
    self.shards_written: list[pathlib.Path] = []

  def write(self, record: SampleRecord) -> None:
    """Appends a record, opening a new shard or closing a full one as needed."""
    if record.key in self._keys_written:
      raise ValueError(f"record {record.key} was already written by this writer")
    if self._writer is None:
      self._temp_path = self._directory / (shard_name(self._process_index, self._next_shard) + _TEMP_SUFFIX)
      self._writer = array_record_module.ArrayRecordWriter(str(self._temp_path), _WRITER_OPTIONS)
    self._writer.write(record.to_bytes())
    self._keys_written.add(record.key)
    self._in_shard += 1
    if self._in_shard == self._records_per_shard:
      self._finish_shard()

  def _finish_shard(self) -> None:
    self._writer.close()
    final = self._temp_path.with_name(self._temp_path.name[: -len(_TEMP_SUFFIX)])
    os.replace(self._temp_path, final)
    self.shards_written.append(final)
    self._writer, self._temp_path, self._in_shard = None, None, 0
    self._next_shard += 1

  def close(self) -> None:
    """Closes and publishes the open shard, if any. Idempotent."""
    if self._writer is not None:
      self._finish_shard()

  def __enter__(self) -> RecordShardWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _read_shard(path: pathlib.Path) -> Iterator[SampleRecord]:
  reader = array_record_module.ArrayRecordReader(str(path))
  try:
    for blob in reader.read_all():
      yield SampleRecord.from_bytes(blob)
  finally:
    reader.close()


def read_records(directory: str | os.PathLike) -> Iterator[SampleRecord]:
  """Yields every record in the complete shards, in (process, shard, position) order."""
  for path in complete_shard_paths(directory):
    yield from _read_shard(path)


def completed_keys(directory: str | os.PathLike) -> set[tuple[str, int]]:
  """The (task_id, sample_index) keys in complete shards of all processes."""
  return {record.key for record in read_records(directory)}


def record_dataset(directory: str | os.PathLike) -> grain.MapDataset:
  """A Grain MapDataset of `SampleRecord`s over all complete shards.

  Element i is the i-th record in `read_records` order, so every host that sees the
  same directory sees the same indexing.

  Raises:
    FileNotFoundError: the directory holds no complete shard.
  """
  paths = complete_shard_paths(directory)
  if not paths:
    raise FileNotFoundError(f"no complete record shards (records-p*-s*.array_record) in {directory}")
  source = grain.sources.ArrayRecordDataSource([str(p) for p in paths])
  return grain.MapDataset.source(source).map(SampleRecord.from_bytes)
