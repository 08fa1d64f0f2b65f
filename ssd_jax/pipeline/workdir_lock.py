"""One run per workdir: an exclusive file lock that names its holder and frees itself when the holder dies."""

from __future__ import annotations

import datetime
import fcntl
import os
import socket


class WorkdirBusyError(RuntimeError):
  """Another live run holds the workdir's lock."""


class WorkdirLock:
  """An exclusive lock on a workdir, so two runs never work in it at once (released when the process ends).

  Raises on entry, naming the holder's host and pid, when another live process holds it; a lock left by a
  dead process is free (the kernel releases it) and is taken over.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._file = None

  def __enter__(self) -> WorkdirLock:
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise WorkdirBusyError(
        f"workdir {os.path.dirname(self.path)} is in use by {holder}; wait for it or use another --workdir"
      ) from None
    self._file.seek(0)
    self._file.truncate()
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    self._file.write(f"pid {os.getpid()} on host {socket.gethostname()} since {since}")
    self._file.flush()
    return self

  def __exit__(self, *exc) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
