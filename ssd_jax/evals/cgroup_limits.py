"""Memory and process-count limits on a sandbox worker's whole process tree through cgroup v2.

Used where this process sits in a cgroup v2 hierarchy whose ``memory`` and ``pids`` controllers are enabled
for its children and whose directory it may write (root on a pure cgroup v2 host, or a delegated systemd
scope). Each worker gets a child cgroup with ``memory.max`` (tmpfs pages count too), ``memory.swap.max = 0``
and ``pids.max``; bubblewrap and everything it starts are moved there once the worker is up, and forks
inherit it. Where none is writable the caller falls back to rlimits and tmpfs caps (see isolation.py).
"""

from __future__ import annotations

import os
import pathlib
import time

REQUIRED_CONTROLLERS = ("memory", "pids")


def cgroup2_mount(mountinfo: str) -> pathlib.Path | None:
  """The cgroup v2 mount point named in /proc/self/mountinfo text, or None."""
  for line in mountinfo.splitlines():
    fields, _, rest = line.partition(" - ")
    if rest.split()[:1] == ["cgroup2"]:
      return pathlib.Path(fields.split()[4])
  return None


def own_cgroup(self_cgroup: str) -> str | None:
  """This process's cgroup v2 path from /proc/self/cgroup text (the ``0::`` line), or None."""
  for line in self_cgroup.splitlines():
    if line.startswith("0::"):
      return line[3:]
  return None


def delegated_parent(
  mountinfo_path: str = "/proc/self/mountinfo", cgroup_path: str = "/proc/self/cgroup"
) -> tuple[pathlib.Path | None, str]:
  """(cgroup directory under which workers' cgroups can be made, or None; why not)."""
  try:
    mount = cgroup2_mount(pathlib.Path(mountinfo_path).read_text())
    own = own_cgroup(pathlib.Path(cgroup_path).read_text())
  except OSError as exc:
    return None, f"cannot read {exc.filename}"
  if mount is None or own is None:
    return None, "no cgroup v2 hierarchy"
  base = mount / own.lstrip("/")
  try:
    enabled = (base / "cgroup.subtree_control").read_text().split()
  except OSError:
    return None, f"{base} has no readable cgroup.subtree_control"
  missing = [c for c in REQUIRED_CONTROLLERS if c not in enabled]
  if missing:
    return None, f"controllers {missing} are not enabled for children of {base}"
  if not os.access(base, os.W_OK):
    return None, f"{base} is not writable"
  return base, ""


class WorkerCgroup:
  """One worker's cgroup: created with its limits, removed when the worker is gone."""

  def __init__(self, parent: pathlib.Path, name: str, memory_bytes: int, max_processes: int):
    self.path = parent / name
    self.path.mkdir()
    (self.path / "memory.max").write_text(str(memory_bytes))
    if (self.path / "memory.swap.max").exists():
      (self.path / "memory.swap.max").write_text("0")
    (self.path / "pids.max").write_text(str(max_processes))

  def add(self, pids) -> None:
    """Moves processes into the cgroup (their later children are born there)."""
    for pid in pids:
      (self.path / "cgroup.procs").write_text(str(pid))

  def oom_kills(self) -> int:
    """How many processes the kernel killed for exceeding memory.max so far."""
    try:
      for line in (self.path / "memory.events").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
          return int(value)
    except (OSError, ValueError):
      pass
    return 0

  def remove(self) -> None:
    """Removes the cgroup once its processes are gone (they may take a moment to be released)."""
    for _ in range(100):
      try:
        self.path.rmdir()
        return
      except FileNotFoundError:
        return
      except OSError:
        time.sleep(0.01)
