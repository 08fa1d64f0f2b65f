"""Files written whole or not at all, so a rerun never parses (or trusts) one torn by a kill."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
  """Opens `<path>.partial` for writing and renames it over `path` when the block ends without an error.

  Until then `path` stays as it was (absent, or its previous version), whatever stops the block.

  Args:
    path: the file to write.
    mode: "w" or "wb".
    **kwargs: passed to `open` (e.g. `encoding`).
  """
  partial = f"{os.fspath(path)}.partial"
  try:
    with open(partial, mode, **kwargs) as f:
      yield f
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(partial)
    raise
  os.replace(partial, path)
