"""Runs untrusted Python against tests in isolated, resource-limited processes.

Each execution starts the trusted runner in ``sandbox_harness.py`` in a new session
with a minimal environment and a private working directory. When this process is
root, every concurrent execution gets its own unprivileged uid (a "slot"), so
RLIMIT_NPROC stops fork bombs and every process the program leaves behind, even one
that called setsid(), is found by uid and killed. Otherwise processes are found by
session id (best effort). Each Sandbox claims its own block of uids through a lock
file, so two pools never share a uid.

Integrity: a test passes only on a record that the runner writes, tagged with a
per-run random nonce, on a dedicated pipe after the test code has returned; stdout,
the exit status, or an early exit cannot produce one. Expected outputs (stdio tests,
code tests with ``expected_stdout``) are compared here, in the parent, and never
enter the sandbox. Assertion tests necessarily run inside the program's process: the
runner blocks the easy routes to its state (gc, ctypes, tracing, /proc memory), but
a program written against the runner's internals could walk interpreter frames and
forge such a pass; prefer expected-output tests where that matters.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fcntl
import json
import os
import pathlib
import queue
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence

import ssd_jax.evals.process_reaper as process_reaper
from ssd_jax.data.problems import TestCase
from ssd_jax.evals.verdicts import TestRun, Verdict, first_difference, outputs_match

HARNESS_SOURCE = (pathlib.Path(__file__).parent / "sandbox_harness.py").read_text()
SANDBOX_UID_BASE = 61000
UID_BLOCK_SIZE = 64  # uids reserved by one Sandbox; blocks are claimed with a lock so pools never share a uid
MAX_UID_BLOCKS = 64
STARTUP_ALLOWANCE_S = 10.0
_STATUS_TO_VERDICT = {
  "failed": Verdict.FAILED,
  "error": Verdict.ERROR,
  "timeout": Verdict.TIMEOUT,
  "memory": Verdict.MEMORY,
}


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """Resource limits for one execution (a program and its tests).

  Attributes:
    timeout_s: wall-clock limit per test.
    cpu_time_s: CPU-time limit per test process.
    memory_mb: address-space limit per process.
    max_processes: processes the program may have at once (fork-bomb guard).
    max_file_mb: largest file the program may write (also caps its stdout file).
    max_output_bytes: stdout/stderr kept per test.
    max_open_files: file descriptors per process.
  """

  timeout_s: float = 10.0
  cpu_time_s: float = 10.0
  memory_mb: int = 1024
  max_processes: int = 16
  max_file_mb: int = 16
  max_output_bytes: int = 64 * 1024
  max_open_files: int = 256

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) <= 0:
        raise ValueError(f"SandboxLimits.{field.name} must be positive, got {getattr(self, field.name)}")


@dataclasses.dataclass(frozen=True)
class ExecutionJob:
  """A program and the tests to run it against."""

  program: str
  tests: tuple[TestCase, ...]


def minimal_environment(workdir: str) -> dict[str, str]:
  """The only environment variables a sandboxed program sees (no inherited secrets)."""
  return {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": workdir,
    "TMPDIR": workdir,
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONIOENCODING": "utf-8",
  }


def _interpreter_problem(python: str, uid: int | None) -> str | None:
  """Why ``python`` cannot run the runner as ``uid``, or None when it can."""
  try:
    probe = subprocess.run(
      [python, "-s", "-P", "-c", "import json, ctypes, collections"],
      user=uid,
      group=uid,
      extra_groups=[] if uid is not None else None,
      env={"PATH": "/usr/bin:/bin"},
      cwd="/",
      capture_output=True,
      timeout=60,
    )
  except (OSError, subprocess.SubprocessError) as exc:
    return f"{python}: {exc}"
  if probe.returncode != 0:
    return f"{python}: exit status {probe.returncode}: {probe.stderr.decode(errors='replace')[-300:]}"
  return None


def find_interpreter(uid: int | None, preferred: str | None = None) -> str:
  """A Python (3.11+) that the sandbox uid can run: ours if reachable, else a system one."""
  candidates = (
    [preferred]
    if preferred
    else [sys.executable, shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"]
  )
  problems = []
  for python in dict.fromkeys(c for c in candidates if c):
    problem = _interpreter_problem(python, uid)
    if problem is None:
      return python
    problems.append(problem)
  raise RuntimeError(f"no Python interpreter usable by sandbox uid {uid}: " + "; ".join(problems))


class Sandbox:
  """A pool of isolated executions, sized to the machine.

  Use as a context manager; ``run`` is thread-safe, ``run_many`` runs jobs in parallel.
  """

  def __init__(
    self,
    limits: SandboxLimits = SandboxLimits(),
    workers: int | None = None,
    isolate_network: bool = True,
    python: str | None = None,
  ):
    self.limits = limits
    self.workers = workers or os.cpu_count() or 1
    self.isolate_network = isolate_network
    self._as_root = os.geteuid() == 0
    if self.workers > UID_BLOCK_SIZE:
      raise ValueError(f"Sandbox: workers must be at most {UID_BLOCK_SIZE}, got {self.workers}")
    self._uid_lock, first_uid = _claim_uid_block() if self._as_root else (None, None)
    self._slots: queue.Queue[int | None] = queue.Queue()
    for slot in range(self.workers):
      self._slots.put(first_uid + slot if self._as_root else None)
    self.python = find_interpreter(first_uid, python)
    self._root = pathlib.Path(tempfile.mkdtemp(prefix="ssd_sandbox_"))
    self._root.chmod(0o711)  # slots may enter their own directory, not list others
    self._jobs_dir = self._root / "jobs"
    self._jobs_dir.mkdir(mode=0o700)
    self._remove_root = weakref.finalize(self, shutil.rmtree, self._root, ignore_errors=True)  # if never closed
    self._executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

  def __enter__(self) -> Sandbox:
    return self

  def __exit__(self, *exc_info):
    self.close()

  def close(self):
    self._executor.shutdown(wait=True)
    self._remove_root()
    if self._uid_lock is not None:
      self._uid_lock.close()  # releases the uid block
      self._uid_lock = None

  def run(self, program: str, tests: Sequence[TestCase], stop_on_failure: bool = False) -> tuple[TestRun, ...]:
    """Runs ``program`` against each test; returns one TestRun per test, in order."""
    uid = self._slots.get()
    try:
      return self._run_in_slot(uid, program, tuple(tests), stop_on_failure)
    finally:
      self._slots.put(uid)

  def run_many(
    self, jobs: Sequence[ExecutionJob], stop_on_failure: bool = False, progress: bool = False
  ) -> list[tuple[TestRun, ...]]:
    """Runs jobs in parallel on the pool; results are in the order of ``jobs``."""
    futures = [self._executor.submit(self.run, job.program, job.tests, stop_on_failure) for job in jobs]
    if progress:
      import tqdm  # only needed for interactive runs

      for _ in tqdm.tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="executing"):
        pass
    return [future.result() for future in futures]

  def _job_spec(self, uid, workdir, program, tests, nonce, result_fd):
    limits = self.limits
    nproc = limits.max_processes + 2  # the runner and the test process itself
    if uid is None:  # RLIMIT_NPROC counts all of our uid's processes
      nproc += process_reaper.count_processes_of_uid(os.getuid())
    return {
      "nonce": nonce,
      "program": program,
      "workdir": str(workdir),
      "result_fd": result_fd,
      "uid": uid,
      "gid": uid,
      "isolate_network": self.isolate_network,
      "tests": [{"name": t.name, "code": t.code, "stdin": t.stdin} for t in tests],
      "limits": {
        "timeout_s": limits.timeout_s,
        "cpu_time_s": limits.cpu_time_s,
        "total_cpu_s": limits.cpu_time_s * max(len(tests), 1) + 5,
        "memory_bytes": limits.memory_mb << 20,
        "max_file_bytes": limits.max_file_mb << 20,
        "max_output_bytes": limits.max_output_bytes,
        "max_open_files": limits.max_open_files,
        "nproc": nproc,
      },
    }

  def _run_in_slot(self, uid, program, tests, stop_on_failure):
    nonce = secrets.token_hex(16)
    workdir = pathlib.Path(tempfile.mkdtemp(dir=self._root))
    if uid is not None:
      os.chown(workdir, uid, uid)
    job_path = self._jobs_dir / f"{workdir.name}.json"
    log_path = self._jobs_dir / f"{workdir.name}.log"
    read_fd, write_fd = os.pipe()
    deadline = time.monotonic() + STARTUP_ALLOWANCE_S + (self.limits.timeout_s + 1.0) * len(tests)
    try:
      with open(job_path, "w", encoding="utf-8", opener=_private_opener) as job_file:
        json.dump(self._job_spec(uid, workdir, program, tests, nonce, write_fd), job_file)
      with open(log_path, "wb", opener=_private_opener) as log_file:
        proc = subprocess.Popen(
          [self.python, "-s", "-B", "-P", "-c", HARNESS_SOURCE, str(job_path)],
          stdin=subprocess.DEVNULL,
          stdout=subprocess.DEVNULL,
          stderr=log_file,
          pass_fds=(write_fd,),
          env=minimal_environment(str(workdir)),
          cwd=workdir,
          start_new_session=True,
        )
    finally:
      os.close(write_fd)
    harness_error = "sandbox runner did not report"
    try:
      stop_after = _first_failure if stop_on_failure else None
      records, harness_error = _collect_records(read_fd, proc, nonce, deadline, tests, stop_after)
    finally:
      os.close(read_fd)
      # A runner that finished all its tests already killed every other process of its own uid.
      finished_normally = harness_error is None and not stop_on_failure and uid is not None
      process_reaper.kill_sandbox_processes(proc, uid, sweep=not finished_normally)
      if uid is not None:
        process_reaper.remove_files_owned_by(uid)
      shutil.rmtree(workdir, ignore_errors=True)
    if harness_error and not records:
      harness_error += _log_tail(log_path)
    job_path.unlink(missing_ok=True)
    log_path.unlink(missing_ok=True)
    return tuple(_test_run(test, records.get(i), harness_error) for i, test in enumerate(tests))


def _claim_uid_block():
  """Locks a free block of sandbox uids for this process; returns (lock file, first uid)."""
  lock_dir = pathlib.Path(tempfile.gettempdir()) / "ssd_sandbox_uid_locks"
  lock_dir.mkdir(mode=0o700, exist_ok=True)
  for block in range(MAX_UID_BLOCKS):
    lock_file = open(lock_dir / f"block_{block}.lock", "a")
    try:
      fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock_file.close()
      continue
    return lock_file, SANDBOX_UID_BASE + block * UID_BLOCK_SIZE
  raise RuntimeError(f"all {MAX_UID_BLOCKS} sandbox uid blocks are in use")


def _private_opener(path, flags):
  return os.open(path, flags, 0o600)


def _log_tail(log_path: pathlib.Path) -> str:
  try:
    text = log_path.read_bytes()[-2000:].decode("utf-8", "replace").strip()
  except OSError:
    return ""
  return f"\nrunner log:\n{text}" if text else ""


def _first_failure(test: TestCase, record: dict) -> bool:
  return not _test_run(test, record, None).passed


def _collect_records(
  read_fd: int, proc: subprocess.Popen, nonce: str, deadline: float, tests: tuple[TestCase, ...], stop_after=None
):
  """Reads the runner's nonce-tagged JSON lines until it finishes or the deadline passes.

  ``stop_after(test, record)`` returning True ends the execution early (the remaining
  tests are skipped). Returns (records by test index, error text or None). Lines
  without the nonce are ignored.
  """
  buffer, records, done = b"", {}, False
  while True:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      return records, "time limit exceeded (whole execution)"
    ready, _, _ = select.select([read_fd], [], [], remaining)
    if not ready:
      continue
    data = os.read(read_fd, 1 << 16)
    if not data:
      break
    buffer += data
    *lines, buffer = buffer.split(b"\n")
    for line in lines:
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if not isinstance(record, dict) or record.get("nonce") != nonce:
        continue
      if record.get("event") == "done":
        done = True
      elif isinstance(record.get("index"), int) and 0 <= record["index"] < len(tests):
        records[record["index"]] = record
        if stop_after is not None and stop_after(tests[record["index"]], record):
          return records, None
  if done:
    return records, None
  try:
    code = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
  except subprocess.TimeoutExpired:
    return records, "time limit exceeded (whole execution)"
  return records, f"sandbox runner ended early (exit status {code}); the program may have killed it"


def _test_run(test: TestCase, record: dict | None, harness_error: str | None) -> TestRun:
  """Turns a runner record into a verdict; stdio outputs are compared here."""
  if record is None:
    if harness_error is None:
      return TestRun(test.name, Verdict.SKIPPED, "not run: an earlier test failed")
    verdict = Verdict.TIMEOUT if "time limit" in harness_error else Verdict.ERROR
    return TestRun(test.name, verdict, harness_error)
  status = record["status"]
  stdout, stderr = record.get("stdout", ""), record.get("stderr", "")
  common = dict(stdout=stdout, stderr=stderr, duration_s=float(record.get("duration_s", 0.0)))
  if status != "completed":
    return TestRun(test.name, _STATUS_TO_VERDICT.get(status, Verdict.ERROR), record.get("message", ""), **common)
  if test.expected_stdout is None:
    return TestRun(test.name, Verdict.PASSED, **common)
  if outputs_match(stdout, test.expected_stdout):
    return TestRun(test.name, Verdict.PASSED, **common)
  message = "wrong output: " + first_difference(stdout, test.expected_stdout)
  if record.get("stdout_truncated"):
    message += " (output truncated)"
  return TestRun(test.name, Verdict.FAILED, message, **common)
