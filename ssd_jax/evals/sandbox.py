"""Runs untrusted programs against tests; every verdict is decided by trusted code.

A Sandbox is a pool of slots. Each slot holds two long-lived processes:

- a sandbox worker (``sandbox_harness.py``) inside bubblewrap (``isolation.py``), which forks one process
  per test, runs the program there, and sends back only data: a script's exit status and output, or the
  values its functions return;
- a trusted checker (``sandbox_checker.py``), which runs a test's assertion code against remote stand-ins
  for the program's functions and never loads the program.

This process relays the checker's calls to the worker, compares stdio output itself (LiveCodeBench's rule,
``verdicts.outputs_match``), and turns both sides' reports into a Verdict. A program can therefore change
only the data it returns: patching json, walking frames or replacing builtins inside its own interpreter
cannot reach a verdict. Tests that need more than data (inspecting a program object) are ``unverifiable``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from ssd_jax.evals import isolation, sandbox_wire
from ssd_jax.evals.problems import TestCase
from ssd_jax.evals.verdicts import TestRun, Verdict, first_difference, outputs_match

_HERE = pathlib.Path(__file__).parent
_WIRE = (_HERE / "sandbox_wire.py").read_text()
HARNESS_SOURCE = _WIRE + (_HERE / "sandbox_harness.py").read_text()
CHECKER_SOURCE = _WIRE + (_HERE / "sandbox_checker.py").read_text()
STARTUP_TIMEOUT_S = 30.0
GRACE_S = 5.0  # beyond the per-test limit before an unresponsive slot is torn down
_STATUS_TO_VERDICT = {
  "failed": Verdict.FAILED,
  "error": Verdict.ERROR,
  "timeout": Verdict.TIMEOUT,
  "memory": Verdict.MEMORY,
  "unverifiable": Verdict.UNVERIFIABLE,
}


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """Resource limits for one test of one program.

  Attributes:
    timeout_s: wall-clock limit per test.
    cpu_time_s: CPU-time limit per test process.
    memory_mb: address-space limit per process.
    max_processes: processes the program may have at once (fork-bomb guard).
    max_file_mb: largest file the program may write (also caps its stdout file).
    max_output_bytes: stdout/stderr kept per test.
    max_open_files: file descriptors per process.
    tmpfs_mb: size of the sandbox's private /tmp and of its /dev/shm, each.
  """

  timeout_s: float = 10.0
  cpu_time_s: float = 10.0
  memory_mb: int = 1024
  max_processes: int = 16
  max_file_mb: int = 16
  max_output_bytes: int = 64 * 1024
  max_open_files: int = 256
  tmpfs_mb: int = 64

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) <= 0:
        raise ValueError(f"SandboxLimits.{field.name} must be positive, got {getattr(self, field.name)}")


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


class _SlotDied(Exception):
  """A worker or checker stopped answering; the slot restarts it."""


def _read(proc: subprocess.Popen, deadline: float) -> dict:
  fd = proc.stdout.fileno()
  if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
    raise _SlotDied("no answer before the deadline")
  message = sandbox_wire.read_message(fd, 2 * sandbox_wire.MAX_MESSAGE_BYTES)
  if message is None:
    raise _SlotDied(f"exited with status {proc.wait()}")
  return message


class _Slot:
  """One sandbox worker and one checker, started on first use and restarted when they die."""

  def __init__(self, pool: Sandbox, uid: int | None):
    self.pool, self.uid = pool, uid
    self.worker: subprocess.Popen | None = None
    self.checker: subprocess.Popen | None = None
    self.scratch: str | None = None

  def _start_worker(self) -> subprocess.Popen:
    iso = self.pool.isolation
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
    proc = self.pool.launcher.submit(
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
    ready = _read(proc, time.monotonic() + STARTUP_TIMEOUT_S)
    if ready.get("event") != "ready":
      raise _SlotDied(f"sandbox worker did not start: {ready}")
    return proc

  def _start_checker(self) -> subprocess.Popen:
    return subprocess.Popen(
      [sys.executable, "-I", "-S", "-B", "-c", CHECKER_SOURCE],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      cwd="/",
      env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
      start_new_session=True,
    )

  def ensure_started(self):
    if self.worker is None or self.worker.poll() is not None:
      self._stop(self.worker)
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
    if proc is self.worker and not self.pool.isolation.wrapper and self.uid is not None:
      _kill_uid(self.uid)  # weak sandbox as root: whatever the program left, found by its uid

  def close(self):
    self._stop(self.worker)
    self._stop(self.checker)
    self.worker = self.checker = None
    if self.scratch is not None:
      shutil.rmtree(self.scratch, ignore_errors=True)
      self.scratch = None

  def _send(self, proc: subprocess.Popen, message: dict):
    try:
      sandbox_wire.write_message(proc.stdin.fileno(), message)
    except OSError as exc:
      raise _SlotDied(f"could not write: {exc}") from exc

  def run_test(self, job: ExecutionJob, test: TestCase) -> TestRun:
    """Runs one test; a dead or stuck slot is restarted and the test judged by what was seen."""
    self.ensure_started()
    limits = self.pool.limits
    deadline = time.monotonic() + limits.timeout_s + GRACE_S
    request = {"op": "run", "mode": "calls" if test.code else "script", "program": job.program, "stdin": test.stdin}
    request["limits"] = self.pool.wire_limits
    try:
      self._send(self.worker, request)
      if not test.code:
        end = self._wait_end(deadline)
        return _script_verdict(test, end)
      return self._run_check(job, test, deadline)
    except _SlotDied as exc:
      self.close()
      timed_out = time.monotonic() >= deadline
      verdict = Verdict.TIMEOUT if timed_out else Verdict.ERROR
      return TestRun(test.name, verdict, f"sandbox stopped: {exc}" if not timed_out else "time limit exceeded")

  def _wait_end(self, deadline: float) -> dict:
    while True:
      event = _read(self.worker, deadline)
      if event.get("event") == "end":
        if event.get("recycle"):
          self._stop(self.worker)
          self.worker = None
        return event

  def _run_check(self, job: ExecutionJob, test: TestCase, deadline: float) -> TestRun:
    """Relays the checker's calls to the program until both sides are done."""
    check = {"op": "check", "code": test.code, "starter": job.starter_code, "entry_point": job.entry_point}
    self._send(self.checker, check)
    loaded, end, result, waiting, finishing = None, None, None, False, False
    worker_fd, checker_fd = self.worker.stdout.fileno(), self.checker.stdout.fileno()
    while result is None or end is None:
      watched = ([worker_fd] if end is None else []) + ([checker_fd] if result is None else [])
      ready, _, _ = select.select(watched, [], [], max(0.0, deadline - time.monotonic()))
      if not ready:
        raise _SlotDied("no answer before the deadline")
      if worker_fd in ready:
        event = _read(self.worker, deadline)
        if event.get("event") == "reply" and loaded is None:
          loaded = event["data"]
        elif event.get("event") == "reply" and waiting:
          self._send(self.checker, event["data"])
          waiting = False
        elif event.get("event") == "end":
          end = event
          if event.get("recycle"):
            self._stop(self.worker)
            self.worker = None
      if checker_fd in ready:
        message = _read(self.checker, deadline)
        if message.get("op") == "result":
          result = message
        elif message.get("op") == "rpc":
          waiting = True
          if end is None:
            self._send(self.worker, {"op": "rpc", "request": message["request"]})
      if result is not None and loaded is not None and end is None and not finishing:
        self._send(self.worker, {"op": "finish"})  # after "loaded", so a failed load is never missed
        finishing = True
      if waiting and end is not None:  # the program is gone: the pending call can never be answered
        self._send(self.checker, _died(loaded, end))
        waiting = False
    return _check_verdict(test, loaded, end, result)


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
    pids = [int(p.name) for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and _owned_by(p, uid)]
    if not pids:
      return
    for pid in pids:
      _kill(pid)
    time.sleep(0.01)


def _owned_by(path: pathlib.Path, uid: int) -> bool:
  try:
    return path.stat().st_uid == uid
  except OSError:
    return False


def _died(loaded: dict | None, end: dict) -> dict:
  if loaded is not None and loaded.get("loaded") is not True:
    status = loaded.get("status") if loaded.get("status") in ("error", "memory", "timeout") else "error"
    return {"died": status, "message": str(loaded.get("message") or "the program did not load")}
  status = end["status"] if end["status"] != "completed" else "error"
  message = end["message"] or "the program exited before the test finished"
  return {"died": status, "message": message}


def _check_verdict(test: TestCase, loaded: dict | None, end: dict, result: dict) -> TestRun:
  common = dict(stdout=result.get("stdout", ""), stderr=end.get("stderr", ""), duration_s=end.get("duration_s", 0.0))
  if loaded is None or not loaded.get("loaded"):
    died = _died(loaded, end)
    return TestRun(test.name, _STATUS_TO_VERDICT.get(died["died"], Verdict.ERROR), died["message"], **common)
  status = result["status"]
  if status != "completed":
    return TestRun(test.name, _STATUS_TO_VERDICT.get(status, Verdict.ERROR), result.get("message", ""), **common)
  if test.expected_stdout is None or outputs_match(common["stdout"], test.expected_stdout):
    return TestRun(test.name, Verdict.PASSED, **common)
  message = "wrong output: " + first_difference(common["stdout"], test.expected_stdout)
  return TestRun(test.name, Verdict.FAILED, message, **common)


def _script_verdict(test: TestCase, end: dict) -> TestRun:
  stdout, stderr = end.get("stdout", ""), end.get("stderr", "")
  common = dict(stdout=stdout, stderr=stderr, duration_s=float(end.get("duration_s", 0.0)))
  status = end["status"]
  if status != "completed":
    message = end.get("message", "")
    if status == "error" and stderr.strip():
      message = f"{message}\n{stderr.strip()[-2000:]}".strip()
    return TestRun(test.name, _STATUS_TO_VERDICT.get(status, Verdict.ERROR), message, **common)
  if outputs_match(stdout, test.expected_stdout):
    return TestRun(test.name, Verdict.PASSED, **common)
  message = "wrong output: " + first_difference(stdout, test.expected_stdout)
  if end.get("stdout_truncated"):
    message += " (output truncated)"
  return TestRun(test.name, Verdict.FAILED, message, **common)


class Sandbox:
  """A pool of isolated slots, sized to the machine.

  Use as a context manager; ``run`` is thread-safe, ``run_many`` runs jobs in parallel.

  Args:
    limits: resource limits per test.
    workers: parallel slots (default: CPU count).
    python: interpreter for the sandboxed programs (default: ours if reachable, else a system one).
    allow_weak_sandbox: when an isolation layer cannot be set up, run with rlimits only instead of
      raising IsolationError; ``weak`` and ``describe()`` then say what is missing.
  """

  def __init__(
    self,
    limits: SandboxLimits = SandboxLimits(),
    workers: int | None = None,
    python: str | None = None,
    allow_weak_sandbox: bool = False,
  ):
    self.limits = limits
    self.workers = workers or os.cpu_count() or 1
    if self.workers > isolation.UID_BLOCK_SIZE:
      raise ValueError(f"Sandbox: workers must be at most {isolation.UID_BLOCK_SIZE}, got {self.workers}")
    as_root = os.geteuid() == 0
    self._uid_lock, first_uid = isolation.claim_uid_block() if as_root else (None, None)
    try:
      self.isolation = isolation.setup_isolation(first_uid, limits.tmpfs_mb << 20, allow_weak_sandbox, python)
    except BaseException:
      self._release_uids()
      raise
    self.uids = tuple(first_uid + i for i in range(self.workers)) if as_root else ()
    self.wire_limits = self._wire_limits()
    self._slots: queue.Queue[_Slot] = queue.Queue()
    self._all_slots = [_Slot(self, self.uids[i] if as_root else None) for i in range(self.workers)]
    for slot in self._all_slots:
      self._slots.put(slot)
    self._executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")
    self.launcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sandbox-launcher")

  @property
  def worker_pids(self) -> tuple[int, ...]:
    """Host pids of the running workers (bubblewrap's outer process, or the worker when weak)."""
    return tuple(slot.worker.pid for slot in self._all_slots if slot.worker is not None)

  @property
  def weak(self) -> str | None:
    """Why this sandbox is weaker than designed, or None."""
    return self.isolation.weak

  def describe(self) -> dict:
    """The isolation in effect, for results files."""
    return {"weak": self.isolation.weak, "layers": dict(self.isolation.layers)}

  def _wire_limits(self) -> dict:
    limits = self.limits
    nproc = limits.max_processes + 2  # the worker and the test process itself
    if not self.isolation.wrapper and not self.uids:  # weak and not root: RLIMIT_NPROC counts all our processes
      nproc += sum(1 for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and _owned_by(p, os.getuid()))
    return {
      "timeout_s": limits.timeout_s,
      "cpu_time_s": limits.cpu_time_s,
      "memory_bytes": limits.memory_mb << 20,
      "max_file_bytes": limits.max_file_mb << 20,
      "max_output_bytes": limits.max_output_bytes,
      "max_open_files": limits.max_open_files,
      "max_reply_bytes": sandbox_wire.MAX_MESSAGE_BYTES,
      "nproc": nproc,
    }

  def __enter__(self) -> Sandbox:
    return self

  def __exit__(self, *exc_info):
    self.close()

  def _release_uids(self):
    if self._uid_lock is not None:
      self._uid_lock.close()
      self._uid_lock = None

  def close(self):
    """Stops every worker and checker; nothing of the pool survives."""
    self._executor.shutdown(wait=True)
    for slot in self._all_slots:
      slot.close()
    self.launcher.shutdown(wait=True)  # only now: its exit would kill the workers it started
    self._release_uids()

  def run(
    self, program: str, tests: Sequence[TestCase], stop_on_failure: bool = False, starter_code: str = ""
  ) -> tuple[TestRun, ...]:
    """Runs ``program`` against each test; returns one TestRun per test, in order."""
    return self.run_job(ExecutionJob(program, tuple(tests), starter_code), stop_on_failure)

  def run_job(self, job: ExecutionJob, stop_on_failure: bool = False) -> tuple[TestRun, ...]:
    slot = self._slots.get()
    try:
      runs = []
      for test in job.tests:
        if stop_on_failure and runs and not runs[-1].passed:
          runs.append(TestRun(test.name, Verdict.SKIPPED, "not run: an earlier test failed"))
        else:
          runs.append(slot.run_test(job, test))
      return tuple(runs)
    finally:
      self._slots.put(slot)

  def run_many(
    self, jobs: Sequence[ExecutionJob], stop_on_failure: bool = False, progress: bool = False
  ) -> list[tuple[TestRun, ...]]:
    """Runs jobs in parallel on the pool; results are in the order of ``jobs``."""
    futures = [self._executor.submit(self.run_job, job, stop_on_failure) for job in jobs]
    if progress:
      import tqdm  # only needed for interactive runs

      for _ in tqdm.tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="executing"):
        pass
    return [future.result() for future in futures]
