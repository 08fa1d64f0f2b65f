"""One slot of a Sandbox: a sandboxed worker and a trusted checker, and the relay between them.

The worker (``sandbox_harness.py``, inside bubblewrap) runs programs and answers with data; the checker
(``sandbox_checker.py``, outside) runs assertion code against remote stand-ins for the program's names.
This module starts both, relays the checker's calls to the worker under a deadline, and turns what they
report into a TestRun (``verdicts``). A slot that stops answering is torn down and restarted, and its test is
judged by what was seen. Stopping a slot waits until every process it started has been reaped.

Each program gets its own process in the worker (``sandbox_harness``): the worker forks it when the program
begins, before any of its messages arrive, and it forks the program's test processes. So a test process
inherits that program's memory only, never an earlier program's source, output or replies (a program could
copy another's solution out of memory). When the program ends the worker checks that its own limits and
scheduling, the namespace's writable sysctls and the count of processes started are what they should be,
and is replaced by a fresh sandbox otherwise: a program of the same uid can change them, and the next
program could read them (samples could pass what the oracle of a multi-assert test taught earlier ones).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
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
from ssd_jax.data.problems import TestCase
from ssd_jax.evals.isolation import Isolation
from ssd_jax.evals.verdicts import TestRun, Verdict, check_verdict, program_died, script_verdict

_HERE = pathlib.Path(__file__).parent
_WIRE = (_HERE / "sandbox_wire.py").read_text()
HARNESS_SOURCE = _WIRE + "".join((_HERE / f"sandbox_{name}.py").read_text() for name in ("program", "state", "harness"))
CHECKER_SOURCE = (
  _WIRE + (_HERE.parent / "data" / "code_names.py").read_text() + (_HERE / "sandbox_checker.py").read_text()
)
STARTUP_TIMEOUT_S = 30.0
GRACE_S = 5.0  # beyond the per-test limit before an unresponsive slot is torn down


@dataclasses.dataclass(frozen=True)
class ExecutionJob:
  """A program, the tests to run it against, and the problem's trusted context.

  Attributes:
    program: the whole program (untrusted).
    tests: the tests.
    starter_code: the problem's starter code; the checker runs it (trusted) before assertion tests, so
      helpers such as HumanEval's ``poly`` come from the problem, not from the program.
    entry_point: the function under test; always taken from the program.
  """

  program: str
  tests: tuple[TestCase, ...]
  starter_code: str = ""
  entry_point: str = ""


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


def _read(proc: subprocess.Popen, deadline: float) -> dict:
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


class Slot:
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
    ready = _read(proc, time.monotonic() + STARTUP_TIMEOUT_S)
    if ready.get("event") != "ready":
      raise SlotDied(f"sandbox worker did not start: {ready}")
    if iso.wrapper and ready.get("keyrings") is not None:  # the probe saw the filter hold: never run without it
      raise SlotDied(f"sandbox worker could not deny keyring calls: {ready['keyrings']}")
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

  def end_program(self, tests: int):
    """Ends the program the worker runs (a job of `tests` tests); a worker the program changed is replaced."""
    if self.worker is None or not self.in_program:
      return
    deadline = time.monotonic() + GRACE_S
    try:
      self._send(self.worker, {"op": "end_program", "tests": tests}, deadline)
      self.in_program = False
      ended = _read(self.worker, deadline)
      if ended.get("event") != "program_end" or ended.get("recycle"):
        self._stop_worker()
    except SlotDied:
      self._stop_worker()

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

  def run_test(self, job: ExecutionJob, test: TestCase) -> TestRun:
    """Runs one test; a dead or stuck slot is restarted and the test judged by what was seen."""
    self.ensure_started()
    deadline = time.monotonic() + self.settings.timeout_s + GRACE_S
    request = {"op": "run", "mode": "calls" if test.code else "script", "program": job.program, "stdin": test.stdin}
    request["limits"] = _test_limits(self.settings.wire_limits, test)
    cgroup = self.cgroup
    oom_kills_before = cgroup.oom_kills() if cgroup is not None else 0
    try:
      if not self.in_program:  # the worker forks the program's own process first
        self._send(self.worker, {"op": "program"}, deadline)
        self.in_program = True
      self._send(self.worker, request, deadline)
      run = script_verdict(test, self._wait_end(deadline)) if not test.code else self._run_check(job, test, deadline)
      oom_killed = cgroup is not None and cgroup.oom_kills() > oom_kills_before
    except SlotDied as exc:
      oom_killed = cgroup is not None and cgroup.oom_kills() > oom_kills_before  # before close() removes it
      self.close()
      timed_out = time.monotonic() >= deadline
      verdict = Verdict.TIMEOUT if timed_out else Verdict.ERROR
      run = TestRun(test.name, verdict, f"sandbox stopped: {exc}" if not timed_out else "time limit exceeded")
    if oom_killed and not run.passed:
      run = dataclasses.replace(
        run, verdict=Verdict.MEMORY, message=f"memory limit of the process tree exceeded\n{run.message}"
      )
    return run

  def _wait_end(self, deadline: float) -> dict:
    while True:
      event = _read(self.worker, deadline)
      if event.get("event") == "end":
        if event.get("recycle"):
          self._stop_worker()
        return event

  def _run_check(self, job: ExecutionJob, test: TestCase, deadline: float) -> TestRun:
    """Relays the checker's calls to the program until both sides are done."""
    check = {"op": "check", "code": test.code, "starter": job.starter_code, "entry_point": job.entry_point}
    check["limits"] = self.settings.wire_limits  # the check's own CPU time and memory follow the test's
    self._send(self.checker, check, deadline)
    loaded, end, result, waiting, finishing = None, None, None, False, False
    worker_fd, checker_fd = self.worker.stdout.fileno(), self.checker.stdout.fileno()
    while result is None or end is None:
      watched = ([worker_fd] if end is None else []) + ([checker_fd] if result is None else [])
      ready, _, _ = select.select(watched, [], [], max(0.0, deadline - time.monotonic()))
      if not ready:
        raise SlotDied("no answer before the deadline")
      if worker_fd in ready:
        event = _read(self.worker, deadline)
        if event.get("event") == "reply" and loaded is None:
          loaded = event["data"] if isinstance(event["data"], dict) else {"loaded": False}
        elif event.get("event") == "reply" and waiting:
          self._send(self.checker, {"program": event["data"]}, deadline)  # wrapped: the program cannot pose as us
          waiting = False
        elif event.get("event") == "end":
          end = event
          if event.get("recycle"):
            self._stop_worker()
      if checker_fd in ready:
        message = _read(self.checker, deadline)
        if message.get("op") == "result":
          result = message
        elif message.get("op") == "rpc":
          waiting = True
          if end is None:
            self._send(self.worker, {"op": "rpc", "request": message["request"]}, deadline)
      if result is not None and loaded is not None and end is None and not finishing:
        self._send(self.worker, {"op": "finish"}, deadline)  # after "loaded", so a failed load is never missed
        finishing = True
      if waiting and end is not None:  # the program is gone: the pending call can never be answered
        self._send(self.checker, program_died(loaded, end), deadline)
        waiting = False
    return check_verdict(test, loaded, end, result)


def _test_limits(limits: dict, test: TestCase) -> dict:
  """The wire limits for `test`: its stdout is read whole up to twice its expected output's length."""
  longest = 2 * len(test.expected_stdout.encode()) if test.expected_stdout else 0
  if longest <= limits["max_output_bytes"]:
    return limits
  return {**limits, "max_output_bytes": longest, "max_file_bytes": max(limits["max_file_bytes"], longest + 1)}


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
