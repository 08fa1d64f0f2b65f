"""Reading text files that may be gzipped: problem sets and release files come as .jsonl or .jsonl.gz."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from typing import IO, Any


def open_text(path: str | os.PathLike) -> IO[str]:
  """`path` opened for reading as UTF-8 text, decompressed when its name ends in .gz."""
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  return opener(path, "rt", encoding="utf-8")


def require_file(path: str | os.PathLike, what: str) -> None:
  """Raises FileNotFoundError naming `what` (e.g. "problem set") when `path` is no file: a directory, or nothing."""
  if not os.path.isfile(path):
    state = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
    raise FileNotFoundError(f"{what} {os.fspath(path)!r} {state}")


def jsonl_records(path: str | os.PathLike) -> Iterator[tuple[str, int, Any]]:
  """(`path:line`, line number, record) for each non-blank line of a JSONL(.gz) file.

  Raises:
    ValueError: naming the line that is not valid JSON.
  """
  with open_text(path) as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{os.fspath(path)}:{line_number}"
      try:
        yield where, line_number, json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from e
