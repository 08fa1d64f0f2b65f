"""Runs untrusted programs against tests; every verdict is decided by trusted code.

A Sandbox is a pool of slots. Each slot holds two long-lived processes:

- a sandbox worker (``sandbox_harness.py``) inside bubblewrap (``isolation.py``), which forks a process per
  program and, from it, one per test (``sandbox_program.py``), runs the program there, and sends back only
  data: a script's exit status and output, or the values its functions return;
- a trusted checker (``sandbox_checker.py``), which runs a test's assertion code against remote stand-ins
  for the program's functions and never loads the program.

This process relays the checker's calls to the worker, compares stdio output itself (LiveCodeBench's rule,
``verdicts.outputs_match``), and turns both sides' reports into a Verdict. A program can therefore change
only the data it returns: patching json, walking frames or replacing builtins inside its own interpreter
cannot reach a verdict. Tests that need more than data (inspecting a program object) are ``unverifiable``.

Slots share the host's CPUs: a test held past its deadline by other processes runs again alone
(``sandbox_reruns``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import pathlib
import queue
import threading
import time
from collections.abc import Sequence

import ssd_jax.evals.cgroup_limits as cgroup_limits
import ssd_jax.evals.isolation as isolation
import ssd_jax.evals.sandbox_reruns as sandbox_reruns
import ssd_jax.evals.sandbox_wire as sandbox_wire
from ssd_jax.data.problems import TestCase
from ssd_jax.evals.sandbox_processes import SlotSettings, owned_by
from ssd_jax.evals.sandbox_slot import ExecutionJob, Slot
from ssd_jax.evals.verdicts import TestRun

# The worker's own share of its cgroup's memory.max: a program's process decodes messages of up to
# sandbox_wire.MAX_RELAYED_BYTES (LiveCodeBench's largest calls are megabytes).
WORKER_MEMORY_MB = 512
MAX_TIMEOUT_S = 86400  # A day per test.
MAX_MEMORY_MB = 1 << 40


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """Resource limits for one test of one program.

  Attributes:
    timeout_s: wall-clock limit per test.
    cpu_time_s: CPU-time limit per test process.
    memory_mb: address-space limit per process.
    max_processes: processes the program may have at once (fork-bomb guard).
    max_file_mb: largest file the program may write (also caps its stdout file).
    max_output_bytes: stdout read per test (stderr: up to `SHOWN_TEXT_CHARS`, 64 KiB, of it); a program that
      prints more gets ERROR (output limit), since a cut output is never compared. A test whose expected
      output is longer than half of it reads twice that output (and lets the program write a file that long).
      A TestRun keeps 64 KiB of each.
    max_open_files: file descriptors per process.
    tmpfs_mb: size of the sandbox's private /tmp and of its /dev/shm, each.
  """

  timeout_s: float = 10.0
  cpu_time_s: float = 10.0
  memory_mb: int = 1024
  max_processes: int = 16
  max_file_mb: int = 16
  max_output_bytes: int = 2 << 20  # outputs of 2e5-line answers fit
  max_open_files: int = 256
  tmpfs_mb: int = 64

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) <= 0:
        raise ValueError(f"SandboxLimits.{field.name} must be positive, got {getattr(self, field.name)}")
    # Longer deadlines overflow the clock's range; more memory, the byte counts rlimits take.
    for name, most in (("timeout_s", MAX_TIMEOUT_S), ("cpu_time_s", MAX_TIMEOUT_S), ("memory_mb", MAX_MEMORY_MB)):
      if getattr(self, name) > most:
        raise ValueError(f"SandboxLimits.{name} must be at most {most}, got {getattr(self, name)}")


class Sandbox:
  """A pool of isolated slots, sized to the machine.

  Use as a context manager; ``run`` and ``run_many`` are thread-safe, ``run_many`` runs jobs in parallel.

  Args:
    limits: resource limits per test.
    workers: parallel slots (default: the CPU count, at most `isolation.UID_BLOCK_SIZE`).
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
    # A sandbox's user ids come in one block: a host with more CPUs runs that many programs at a time.
    self.workers = workers or min(os.cpu_count() or 1, isolation.UID_BLOCK_SIZE)
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
    self.cgroup_parent, no_cgroup = cgroup_limits.delegated_parent() if self.isolation.wrapper else (None, "weak")
    tree_memory_mb = limits.memory_mb + 2 * limits.tmpfs_mb + WORKER_MEMORY_MB
    self.cgroup_limits = (tree_memory_mb << 20, limits.max_processes + 3)
    if self.cgroup_parent is not None:
      self.tree_limits = f"cgroup v2: memory.max {tree_memory_mb} MiB, pids.max {self.cgroup_limits[1]} per worker"
    else:
      ceiling = limits.max_processes * limits.memory_mb + 2 * limits.tmpfs_mb
      self.tree_limits = (
        f"rlimits: {limits.memory_mb} MiB address space x at most {limits.max_processes} processes, plus tmpfs: "
        f"at most {ceiling} MiB per worker (no writable cgroup v2: {no_cgroup})"
      )
    self._executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")
    self._launcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sandbox-launcher")
    settings = SlotSettings(
      self.isolation, limits.timeout_s, self.wire_limits, self._launcher, self.cgroup_parent, self.cgroup_limits
    )
    self._slots: queue.Queue[Slot] = queue.Queue()
    # One `_alone` gathers slots at a time (two, each holding some, would wait for each other's), and jobs
    # take their slots behind it.
    self._gathering = threading.Lock()
    if sandbox_wire.run_delay_s() is None:
      sandbox_reruns.warn_no_run_delay()
    self._all_slots = [Slot(settings, i, self.uids[i] if as_root else None) for i in range(self.workers)]
    for slot in self._all_slots:
      self._slots.put(slot)

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
    return {"weak": self.isolation.weak, "layers": {**self.isolation.layers, "process tree": self.tree_limits}}

  def _wire_limits(self) -> dict:
    limits = self.limits
    nproc = limits.max_processes + 3  # the worker, the program's process and the test process itself
    if not self.isolation.wrapper and not self.uids:  # weak and not root: RLIMIT_NPROC counts all our processes
      nproc += sum(1 for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and owned_by(p, os.getuid()))
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

  def start(self) -> None:
    """Starts every slot's worker and checker now (otherwise each starts on its first test)."""
    for future in [self._executor.submit(slot.ensure_started) for slot in self._all_slots]:
      future.result()

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
    self._launcher.shutdown(wait=True)  # only now: its exit would kill the workers it started
    self._release_uids()

  def run(
    self, program: str, tests: Sequence[TestCase], stop_on_failure: bool = False, starter_code: str = ""
  ) -> tuple[TestRun, ...]:
    """Runs ``program`` against each test; returns one TestRun per test, in order (as ``run_many``)."""
    return self.run_many([ExecutionJob(program, tuple(tests), starter_code)], stop_on_failure)[0]

  def _run_job(self, job: ExecutionJob, stop_on_failure: bool) -> tuple[TestRun, ...]:
    with self._gathering:
      slot = self._slots.get()
    try:
      return slot.run_job(job, stop_on_failure)
    finally:
      self._slots.put(slot)  # a slot never leaves the pool

  @contextlib.contextmanager
  def _alone(self):
    """Yields a slot while this caller holds every slot of the pool: no other program runs meanwhile."""
    held = []
    try:
      with self._gathering:
        for _ in self._all_slots:
          held.append(self._slots.get())
      yield held[0]
    finally:
      for slot in held:
        self._slots.put(slot)

  def run_many(
    self, jobs: Sequence[ExecutionJob], stop_on_failure: bool = False, progress: bool = False
  ) -> list[tuple[TestRun, ...]]:
    """Runs jobs in parallel on the pool; results are in the order of ``jobs``.

    A test that timed out held back by other processes (`sandbox_reruns`) is run again in a fresh sandbox
    with no other program of the pool running, and that run's verdict replaces the first's; a program's
    reruns stop at its first that does not pass, and all reruns once they have taken as long as the batch.
    """
    started = time.monotonic()
    futures = [self._executor.submit(self._run_job, job, stop_on_failure) for job in jobs]
    if progress:
      import tqdm  # only needed for interactive runs

      for _ in tqdm.tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="executing"):
        pass
    results = [list(future.result()) for future in futures]
    again = {i: tests for i, runs in enumerate(results) if (tests := sandbox_reruns.held_back_tests(runs))}
    if again:
      batch_s = time.monotonic() - started
      with self._alone() as slot:
        sandbox_reruns.rerun(slot, jobs, results, again, time.monotonic() + batch_s)
    return [tuple(runs) for runs in results]
