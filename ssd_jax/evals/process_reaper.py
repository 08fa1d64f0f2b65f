"""Finds and kills whatever a sandboxed program left behind, and removes its stray files."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import time

import psutil

SHARED_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_MAX_SWEEPS = 100


def count_processes_of_uid(uid: int) -> int:
  """Number of live processes whose real uid is ``uid``."""
  return len(live_processes(lambda p: p.info["uids"] is not None and p.info["uids"].real == uid))


def live_processes(predicate) -> list[psutil.Process]:
  """Non-zombie processes for which ``predicate(proc)`` holds (``proc.info`` has uids and status)."""
  found = []
  for proc in psutil.process_iter(["uids", "status"]):
    try:
      if proc.info["status"] != psutil.STATUS_ZOMBIE and predicate(proc):
        found.append(proc)
    except (psutil.Error, OSError):
      continue
  return found


def _in_session(proc: psutil.Process, session_id: int) -> bool:
  try:
    return os.getsid(proc.pid) == session_id
  except OSError:
    return False


def sandbox_processes(session_id: int, uid: int | None) -> list[psutil.Process]:
  """Live processes that belong to a sandbox: by uid when it has its own, else by session."""
  if uid is not None:
    return live_processes(lambda p: p.info["uids"] is not None and p.info["uids"].real == uid)
  own_uid = os.getuid()
  return live_processes(
    lambda p: (
      p.info["uids"] is not None
      and p.info["uids"].real == own_uid
      and p.pid != os.getpid()
      and _in_session(p, session_id)
    )
  )


def kill_sandbox_processes(runner: subprocess.Popen, uid: int | None, sweep: bool = True) -> None:
  """Kills the runner's session and, with ``sweep``, every process of the sandbox; reaps the runner.

  With a dedicated uid the sweep also catches daemons that escaped the session with
  setsid(). Sweeps repeat until nothing is left, since a dying fork bomb may still be forking.
  """
  try:
    os.killpg(runner.pid, signal.SIGKILL)
  except OSError:
    pass
  for _ in range(_MAX_SWEEPS if sweep else 0):
    survivors = sandbox_processes(runner.pid, uid)
    if not survivors:
      break
    for proc in survivors:
      try:
        proc.kill()
      except psutil.Error:
        pass
    time.sleep(0.005)
  runner.wait()


def remove_files_owned_by(uid: int, directories=SHARED_WRITABLE_DIRS) -> None:
  """Deletes top-level entries of world-writable directories that the sandbox uid created."""
  for directory in directories:
    try:
      entries = list(os.scandir(directory))
    except OSError:
      continue
    for entry in entries:
      try:
        if entry.stat(follow_symlinks=False).st_uid != uid:
          continue
        if entry.is_dir(follow_symlinks=False):
          shutil.rmtree(entry.path, ignore_errors=True)
        else:
          pathlib.Path(entry.path).unlink(missing_ok=True)
      except OSError:
        continue
