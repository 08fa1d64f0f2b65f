"""Sample records: byte format, resumable sharded writing, reading, the degeneracy filter."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from data_records_fixtures import make_record

from ssd_jax.data.records import (
  RecordShardWriter,
  SampleRecord,
  completed_keys,
  filter_degenerate,
  is_degenerate,
  read_records,
  record_dataset,
)

N_TASKS = 23


def _all_records():
  return [make_record(t) for t in range(N_TASKS)]


def _files(directory):
  return sorted(p.name for p in pathlib.Path(directory).iterdir())


def test_record_round_trips_exactly():
  record = make_record(3, 2, extra={"nested": {"a": [1, 2]}, "note": "ünïcode ✓"})
  restored = SampleRecord.from_bytes(record.to_bytes())
  assert restored == record
  # float32 log-probs survive bit for bit.
  np.testing.assert_array_equal(
    np.asarray(restored.logprob_raw, np.float64), np.asarray(record.logprob_raw, np.float64)
  )
  assert json.loads(record.to_bytes())["schema_version"] == 1


def test_record_rejects_bad_input():
  blob = json.loads(make_record(0).to_bytes())
  with pytest.raises(ValueError, match="schema_version"):
    SampleRecord.from_bytes(json.dumps({**blob, "schema_version": 99}).encode())
  with pytest.raises(ValueError, match="unknown fields"):
    SampleRecord.from_bytes(json.dumps({**blob, "logprob": [0.0]}).encode())
  with pytest.raises(ValueError, match="logprob_raw"):
    make_record(0, logprob_raw=[0.0])
  with pytest.raises(ValueError, match="exactly one of prompt_messages and prompt_text"):
    make_record(0, prompt_text="hi")
  with pytest.raises(ValueError, match="role"):
    make_record(0, prompt_messages=[{"role": "narrator", "content": "x"}])


def test_uninterrupted_write_and_read(tmp_path):
  expected = _all_records()
  with RecordShardWriter(tmp_path, process_index=0, records_per_shard=5) as writer:
    for record in expected:
      writer.write(record)
  assert _files(tmp_path) == [f"records-p000-s{i:05d}.array_record" for i in range(5)]
  assert list(read_records(tmp_path)) == expected
  dataset = record_dataset(tmp_path)
  assert len(dataset) == N_TASKS and [dataset[i] for i in range(N_TASKS)] == expected
  with pytest.raises(ValueError, match="already written"):
    writer.write(expected[0])


def _resume(directory, expected):
  done = completed_keys(directory)
  with RecordShardWriter(directory, process_index=0, records_per_shard=5) as writer:
    for record in expected:
      if record.key not in done:
        writer.write(record)


def _assert_same_as_uninterrupted(directory, expected):
  got = list(read_records(directory))
  assert len(got) == len({r.key for r in got}), "duplicate records"
  assert sorted(got, key=lambda r: r.key) == sorted(expected, key=lambda r: r.key)
  assert not [name for name in _files(directory) if name.endswith(".tmp")]


def test_resume_after_killed_process(tmp_path):
  # A real process writes 12 records (2 complete shards + 2 in the open one) and dies.
  script = (
    "import os, sys\n"
    "from ssd_jax.data.records import RecordShardWriter\n"
    "from data_records_fixtures import make_record\n"
    "writer = RecordShardWriter(sys.argv[1], process_index=0, records_per_shard=5)\n"
    "for t in range(12):\n"
    "  writer.write(make_record(t))\n"
    "os._exit(0)\n"
  )
  root = pathlib.Path(__file__).resolve().parents[1]
  subprocess.run(
    [sys.executable, "-c", script, str(tmp_path)],
    check=True,
    cwd=root,
    env={**os.environ, "PYTHONPATH": str(root / "tests")},
  )
  assert _files(tmp_path) == [
    "records-p000-s00000.array_record",
    "records-p000-s00001.array_record",
    "records-p000-s00002.array_record.tmp",
  ]
  assert completed_keys(tmp_path) == {(f"task-{t}", 0) for t in range(10)}
  expected = _all_records()
  _resume(tmp_path, expected)
  _assert_same_as_uninterrupted(tmp_path, expected)


def test_resume_after_exception_and_after_abandoned_writer(tmp_path):
  expected = _all_records()
  with pytest.raises(RuntimeError):
    with RecordShardWriter(tmp_path, process_index=0, records_per_shard=5) as writer:
      for record in expected[:7]:
        writer.write(record)
      raise RuntimeError("sampler crashed")
  # The exception closed the partial shard: all 7 records are complete.
  assert len(completed_keys(tmp_path)) == 7
  abandoned = RecordShardWriter(tmp_path, process_index=0, records_per_shard=5)
  for record in expected[7:16]:
    abandoned.write(record)  # one shard of 5 closes; 4 stay in a temporary
  assert len(completed_keys(tmp_path)) == 12
  _resume(tmp_path, expected)
  _assert_same_as_uninterrupted(tmp_path, expected)
  del abandoned


def test_two_processes_write_separate_shards(tmp_path):
  expected = _all_records()
  writers = [RecordShardWriter(tmp_path, process_index=p, records_per_shard=4) for p in (0, 1)]
  for i, record in enumerate(expected):
    writers[i % 2].write(record)
  writers[0].close()
  # Process 1 has not closed its open shard yet; only its full shards count.
  assert completed_keys(tmp_path) == {r.key for r in expected[0::2]} | {r.key for r in expected[1:16:2]}
  writers[1].close()
  assert _files(tmp_path) == (
    [f"records-p000-s{i:05d}.array_record" for i in range(3)]
    + [f"records-p001-s{i:05d}.array_record" for i in range(3)]
  )
  # Reading order: process 0's shards, then process 1's.
  assert list(read_records(tmp_path)) == expected[0::2] + expected[1::2]


def test_record_dataset_needs_shards(tmp_path):
  with pytest.raises(FileNotFoundError, match="no complete record shards"):
    record_dataset(tmp_path)


@pytest.mark.parametrize(
  "text, reason",
  [
    ("", "empty"),
    ("  \n\t ", "empty"),
    ("```python\n\n# nothing yet\n```", "empty_code"),
    ("```python\n```\n", "empty_code"),
    # Reasoning cut off just after the fence opened: as much an output as the same text cut just before it.
    ("Let me reason.\nWe need a segment tree.\n```python\n", None),
    ("Let me reason.\nWe need a segment tree.\n```python", None),
    ("Here you go:\n```python\npass\n```\nDone.", "one_line_stub"),
    ("```python\n...\n```", "one_line_stub"),
    ("```python\ndef solve(n: int) -> int:\n```", "one_line_stub"),
    ("def solve():  pass", "one_line_stub"),
    ("```python\nraise NotImplementedError()\n```", "one_line_stub"),
    ("```python\nclass Solution:\n```", "one_line_stub"),
    ("```python\nprint(sum(map(int, input().split())))\n```", None),
    ("```python\ndef f(x):\n    return x + 1\n```", None),
    ("```python\ndef f(x):\n    return x + 1", None),  # truncated, unterminated fence
    ("I think the answer is 42.", None),
    ("pass the salt\n```python\nx = 1\ny = 2\n```", None),
  ],
)
def test_is_degenerate(text, reason):
  assert is_degenerate(text) == reason


def test_filter_degenerate_counts():
  texts = ["", "```\npass\n```", "x = 1\nprint(x)", " ", "```python\n# todo\n```", "print(1)"]
  records = [make_record(i, completion=t) for i, t in enumerate(texts)]
  kept, counts = filter_degenerate(records)
  assert [r.completion_text for r in kept] == ["x = 1\nprint(x)", "print(1)"]
  assert counts == {"empty": 2, "one_line_stub": 1, "empty_code": 1, "kept": 2}
