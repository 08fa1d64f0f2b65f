"""The two processes of a sandbox slot: starting them, talking to them, and stopping them.

A slot's worker (``sandbox_harness.py``, inside bubblewrap unless the sandbox is weak) and its checker
(``sandbox_checker.py``, outside) are started from source text on first use and restarted when they die.
Stopping one waits until every process it started has been reaped: a worker that does not exit on its own
is killed children first, and a weak sandbox run as root also kills whatever is left under the slot's uid.
How a slot runs tests through them is ``sandbox_slot.py``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import logging
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import ssd_jax.evals.cgroup_limits as cgroup_limits
import ssd_jax.evals.sandbox_wire as sandbox_wire
from ssd_jax.evals.isolation import Isolation

_HERE = pathlib.Path(__file__).parent
_WIRE = (_HERE / "sandbox_wire.py").read_text()
HARNESS_SOURCE = _WIRE + "".join((_HERE / f"sandbox_{name}.py").read_text() for name in ("program", "state", "harness"))
CHECKER_SOURCE = (
  _WIRE
  + (_HERE.parent / "data" / "code_names.py").read_text()
  + "".join((_HERE / f"sandbox_{name}.py").read_text() for name in ("standins", "checker"))
)
STARTUP_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class SlotSettings:
  """What every slot of a pool shares.

  Attributes:
    isolation: how workers are started (``isolation.setup_isolation``).
    timeout_s: wall-clock limit per test.
    wire_limits: the limits sent to the worker with each test.
    launcher: the one long-lived thread that starts workers (bubblewrap ties a worker to its thread).
    cgroup_parent: where worker cgroups are made, or None.
    cgroup_limits: (memory.max bytes, pids.max) of each worker cgroup.
  """

  isolation: Isolation
  timeout_s: float
  wire_limits: dict
  launcher: concurrent.futures.Executor
  cgroup_parent: pathlib.Path | None
  cgroup_limits: tuple[int, int]


class SlotDied(Exception):
  """A worker or checker stopped answering; the slot restarts it."""


def receive(proc: subprocess.Popen, deadline: float) -> dict:
  """Reads one message from a worker or checker; silence until `deadline`, or anything but data, is death."""
  fd = proc.stdout.fileno()
  if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
    raise SlotDied("no answer before the deadline")
  try:
    message = sandbox_wire.read_message(fd, sandbox_wire.MAX_RELAYED_BYTES)
  except sandbox_wire.NotData as exc:  # e.g. a program's reply that grew past the limit when relayed
    raise SlotDied(str(exc)) from None
  if message is None:
    raise SlotDied(f"exited with status {proc.wait()}")
  return message


class SlotProcesses:
  """One sandbox worker and one checker, started on first use and restarted when they die."""

  def __init__(self, settings: SlotSettings, index: int, uid: int | None):
    self.settings, self.index, self.uid = settings, index, uid
    self.cgroup: cgroup_limits.WorkerCgroup | None = None
    self.worker: subprocess.Popen | None = None
    self.checker: subprocess.Popen | None = None
    self.scratch: str | None = None
    self.in_program = False  # the worker has forked the running program's process

  def _start_worker(self) -> subprocess.Popen:
    iso = self.settings.isolation
    if iso.wrapper:
      config = {"scratch": "/tmp", "pid_namespace": True}
      argv = list(iso.wrapper) + [iso.python]
    else:  # weak: a private scratch directory instead of a private /tmp
      self.scratch = tempfile.mkdtemp(prefix="ssd_sandbox_")
      if self.uid is not None:
        os.chown(self.scratch, self.uid, self.uid)
      config = {"scratch": self.scratch, "pid_namespace": False}
      argv = [iso.python]
    # bubblewrap's --die-with-parent ties the worker to the thread that starts it: one long-lived thread does.
    proc = self.settings.launcher.submit(
      subprocess.Popen,
      argv + ["-I", "-S", "-B", "-c", HARNESS_SOURCE, json.dumps(config)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      user=self.uid,
      group=self.uid,
      extra_groups=[] if self.uid is not None else None,
      cwd="/",
      env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
      start_new_session=True,
    ).result()
    self.worker = proc  # so that a failed start is stopped like any worker
    ready = receive(proc, time.monotonic() + STARTUP_TIMEOUT_S)
    if ready.get("event") != "ready":
      raise SlotDied(f"sandbox worker did not start: {ready}")
    if iso.wrapper and ready.get("keyrings") is not None:  # the probe saw the filter hold: never run without it
      raise SlotDied(f"sandbox worker could not deny keyring calls: {ready['keyrings']}")
    if iso.wrapper and not ready.get("pid_counter"):
      _warn_no_pid_counter()
    if self.settings.cgroup_parent is not None:  # the worker is idle: its whole tree so far is bubblewrap and itself
      self.cgroup = cgroup_limits.WorkerCgroup(
        self.settings.cgroup_parent, f"ssd_sandbox_{os.getpid()}_{self.index}_{proc.pid}", *self.settings.cgroup_limits
      )
      self.cgroup.add([proc.pid] + _children(proc.pid))
    return proc

  def _start_checker(self) -> subprocess.Popen:
    return subprocess.Popen(
      [sys.executable, "-I", "-S", "-B", "-c", CHECKER_SOURCE],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,  # a checker stopped mid-check complains about its closed pipe
      cwd="/",
      env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
      start_new_session=True,
    )

  def _stop_worker(self):
    self._stop(self.worker)
    self.worker = None
    self.in_program = False
    if self.scratch is not None:
      shutil.rmtree(self.scratch, ignore_errors=True)
      self.scratch = None

  def ensure_started(self):
    if self.worker is None or self.worker.poll() is not None:
      self._stop_worker()
      self.worker = self._start_worker()
    if self.checker is None or self.checker.poll() is not None:
      self._stop(self.checker)
      self.checker = self._start_checker()

  def _stop(self, proc: subprocess.Popen | None):
    """Stops a worker or checker and waits until every process of it is gone.

    Closing its input lets it exit on its own: the worker is its PID namespace's init, so its exit empties
    the namespace before bubblewrap exits. One that does not answer gets SIGKILL, children first (the
    worker inside bubblewrap, the checker's running check), so every process is reaped by its own parent.
    """
    if proc is None:
      return
    for stream in (proc.stdin, proc.stdout):
      if stream is not None:
        stream.close()
    try:
      proc.wait(timeout=0 if proc.returncode is not None else 2.0)
    except subprocess.TimeoutExpired:
      for pid in _children(proc.pid):
        _kill(pid)
      try:
        proc.wait(timeout=STARTUP_TIMEOUT_S)
      except subprocess.TimeoutExpired:
        _kill(-proc.pid)
        proc.wait()
    if proc is self.worker and not self.settings.isolation.wrapper and self.uid is not None:
      _kill_uid(self.uid)  # weak sandbox as root: whatever the program left, found by its uid
    if proc is self.worker and self.cgroup is not None:
      self.cgroup.remove()
      self.cgroup = None

  def close(self):
    self._stop_worker()
    self._stop(self.checker)
    self.checker = None

  def _send(self, proc: subprocess.Popen, message: dict, deadline: float):
    """Writes to a worker or checker; one that stops reading (a program can keep the worker busy) is dead."""
    try:
      sandbox_wire.write_message(proc.stdin.fileno(), message, deadline)
    except OSError as exc:  # TimeoutError included
      raise SlotDied(f"could not write: {exc}") from exc


@functools.cache
def _warn_no_pid_counter() -> None:
  """Once per process: the sandbox cannot count the processes a program started, so it replaces itself after
  every program (correct, but each program then pays a sandbox start)."""
  # Standard logging, not absl: these modules run under a bare system Python in the unprivileged test.
  logging.getLogger(__name__).warning(
    "sandbox: the kernel gives no readable /proc/sys/kernel/ns_last_pid in the sandbox's PID namespace, so a "
    "program that started processes cannot be told from one that did not; every program gets a fresh sandbox "
    "(slower, not less strict)"
  )


def _children(pid: int) -> list[int]:
  found = []
  for task in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
    try:
      found += [int(child) for child in task.read_text().split()]
    except OSError:
      continue
  return found


def _kill(pid: int):
  """SIGKILL to a pid (a process group when negative), if it still exists."""
  try:
    os.kill(pid, signal.SIGKILL)
  except OSError:
    pass


def _kill_uid(uid: int):
  for _ in range(100):
    pids = [int(p.name) for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and owned_by(p, uid)]
    if not pids:
      return
    for pid in pids:
      _kill(pid)
    time.sleep(0.01)


def owned_by(path: pathlib.Path, uid: int) -> bool:
  try:
    return path.stat().st_uid == uid
  except OSError:
    return False
