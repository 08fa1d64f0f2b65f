"""Reading text files that may be gzipped: problem sets and release files come as .jsonl or .jsonl.gz."""

from __future__ import annotations

import gzip
import os
from typing import IO


def open_text(path: str | os.PathLike) -> IO[str]:
  """`path` opened for reading as UTF-8 text, decompressed when its name ends in .gz."""
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  return opener(path, "rt", encoding="utf-8")
