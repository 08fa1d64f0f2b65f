"""One slot of a Sandbox: runs a job's tests through its worker and checker, relaying between them.

The worker (``sandbox_harness.py``, inside bubblewrap) runs programs and answers with data; the checker
(``sandbox_checker.py``, outside) runs assertion code against remote stand-ins for the program's names.
Both are started, restarted and stopped by ``sandbox_processes.py``. This module relays the checker's calls
to the worker under a deadline and turns what they report into a TestRun (``verdicts``). A slot that stops
answering is torn down and restarted, and its test is judged by what was seen.

Each program gets its own process in the worker (``sandbox_harness``): the worker forks it when the program
begins, before any of its messages arrive, and it forks the program's test processes. So a test process
inherits that program's memory only, never an earlier program's source, output or replies (a program could
copy another's solution out of memory). When the program ends the worker checks that its own limits and
scheduling, the namespace's writable sysctls and the count of processes started are what they should be,
and is replaced by a fresh sandbox otherwise: a program of the same uid can change them, and the next
program could read them (samples could pass what the oracle of a multi-assert test taught earlier ones).
"""

from __future__ import annotations

import dataclasses
import select
import time

from ssd_jax.data.problems import TestCase
from ssd_jax.evals.sandbox_processes import SlotDied, SlotProcesses, receive
from ssd_jax.evals.verdicts import TestRun, Verdict, check_verdict, program_died, script_verdict

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


class Slot(SlotProcesses):
  """A sandbox slot: runs jobs' tests through its worker and checker (``SlotProcesses``), relaying between them."""

  def end_program(self, tests: int):
    """Ends the program the worker runs (a job of `tests` tests); a worker the program changed is replaced."""
    if self.worker is None or not self.in_program:
      return
    deadline = time.monotonic() + GRACE_S
    try:
      self._send(self.worker, {"op": "end_program", "tests": tests}, deadline)
      self.in_program = False
      ended = receive(self.worker, deadline)
      if ended.get("event") != "program_end" or ended.get("recycle"):
        self._stop_worker()
    except SlotDied:
      self._stop_worker()

  def run_job(self, job: ExecutionJob, stop_on_failure: bool) -> tuple[TestRun, ...]:
    """Runs `job`'s tests, in order, then ends its program; after a non-passing test with
    `stop_on_failure`, the rest are SKIPPED."""
    try:
      runs = []
      for test in job.tests:
        if stop_on_failure and runs and not runs[-1].passed:
          runs.append(TestRun(test.name, Verdict.SKIPPED, "not run: an earlier test failed"))
        else:
          runs.append(self.run_test(job, test))
      return tuple(runs)
    finally:
      self.end_program(len(job.tests))

  def run_test(self, job: ExecutionJob, test: TestCase) -> TestRun:
    """Runs one test; a dead or stuck slot is restarted and the test judged by what was seen."""
    self.ensure_started()
    started = time.monotonic()
    deadline = started + self.settings.timeout_s + GRACE_S
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
      message = f"sandbox stopped: {exc}" if not timed_out else "time limit exceeded"
      run = TestRun(test.name, verdict, message, duration_s=time.monotonic() - started)
    if oom_killed and not run.passed:
      run = dataclasses.replace(
        run, verdict=Verdict.MEMORY, message=f"memory limit of the process tree exceeded\n{run.message}"
      )
    return run

  def _wait_end(self, deadline: float) -> dict:
    while True:
      event = receive(self.worker, deadline)
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
        event = receive(self.worker, deadline)
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
        message = receive(self.checker, deadline)
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
