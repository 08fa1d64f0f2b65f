"""Tests held past their deadline by other processes, run again alone.

Slots share the host's CPUs (no cgroup ``cpu.max`` divides them), so a program that keeps its processes busy
can hold a correct one on another slot past its deadline. A test that timed out while its process and check
waited for a CPU for `WAITED_SHARE` of its time or more (the kernel's run delay), and that started no process
or thread of its own (which could have crowded it; its run delay is then unknown), was held back: once the
batch is done it runs again in a fresh sandbox while no other program of the pool runs, and that verdict
replaces the first for that test alone, so a failure is never run again. A program that sleeps, waits or
computes on a free CPU is not run again. A program's reruns stop at its first that does not pass, and all
reruns once they have taken as long as the batch did.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence

from ssd_jax.evals.sandbox_slot import ExecutionJob, Slot
from ssd_jax.evals.verdicts import TestRun, Verdict

WAITED_SHARE = 0.25  # of a timed-out test's wall time spent waiting for a CPU: the test was held back


def held_back(run: TestRun) -> bool:
  """A timeout whose process and check waited for a CPU for `WAITED_SHARE` of its time or more."""
  return run.verdict is Verdict.TIMEOUT and run.waited_s >= WAITED_SHARE * run.duration_s > 0


def held_back_tests(runs: Sequence[TestRun]) -> list[int]:
  """Indices of the held-back runs, and of those skipped after the first of them (``stop_on_failure``)."""
  first = next((t for t, run in enumerate(runs) if held_back(run)), len(runs))
  return [t for t, run in enumerate(runs) if t >= first and (held_back(run) or run.verdict is Verdict.SKIPPED)]


@functools.cache
def warn_no_run_delay() -> None:
  """Once per process: without the kernel's run delay no test is known to be held back."""
  # Standard logging, not absl: this module also runs under a bare system Python (the unprivileged test).
  logging.getLogger(__name__).warning(
    "sandbox: the kernel keeps no run delay (/proc/<pid>/schedstat), so a test that timed out while other "
    "processes held it back is not run again"
  )


def rerun(
  slot: Slot,
  jobs: Sequence[ExecutionJob],
  results: list[list[TestRun]],
  again: dict[int, list[int]],
  deadline: float,
) -> None:
  """Runs the tests `again` names (job index -> test indices) on `slot`, into `results`, until `deadline`.

  Args:
    slot: a slot the caller holds with every other slot of its pool.
    jobs: the batch's jobs.
    results: each job's runs, the first run's; a rerun's replace those of the tests it ran.
    again: which tests of which jobs to run again (`held_back_tests`).
    deadline: time.monotonic() after which no further program is run again.
  """
  ran = passed = left = 0
  for i, tests in again.items():
    if time.monotonic() >= deadline:
      left += len(tests)
      continue
    slot.close()  # a fresh sandbox: what the first run left in the last one does not reach this one
    job = dataclasses.replace(jobs[i], tests=tuple(jobs[i].tests[t] for t in tests))
    for t, run in zip(tests, slot.run_job(job, stop_on_failure=True)):
      if run.verdict is not Verdict.SKIPPED:  # skipped here: the first run's verdict stands
        results[i][t] = run
        ran, passed = ran + 1, passed + run.passed
  logging.getLogger(__name__).warning(
    "sandbox: %d tests of %d programs timed out while waiting for a CPU for %d%% of their time or more (held "
    "back by other processes); %d ran again, each program in a fresh sandbox with no other program of this "
    "pool running, and %d passed%s",
    sum(map(len, again.values())),
    len(again),
    round(100 * WAITED_SHARE),
    ran,
    passed,
    f"; {left} did not (reruns stop once they have taken as long as the batch)" if left else "",
  )
