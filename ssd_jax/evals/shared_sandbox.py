"""Grading shared by the processes of a run: each host runs its share of the jobs, everyone gets every verdict.

On a pod every host holds the same samples (generation gathers them), so grading them on every host repeats
the work `count` times and lets hosts disagree (a program near the time limit can time out on one host and
not on another). `SharedSandbox.run_many` runs every count-th job on this host's own pool and gathers the
verdicts once, so every process sees the same verdicts for the same cost as one host's share.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from ssd_jax.evals.sandbox import ExecutionJob, Sandbox
from ssd_jax.evals.verdicts import TestRun, Verdict
from ssd_jax.process_group import ProcessGroup


def _encode(runs: list[tuple[TestRun, ...]], weak: str | None) -> bytes:
  # As UTF-8: ASCII escapes would make each emoji of a program's output 12 bytes (a TestRun's texts are
  # surrogate-free, so every one encodes).
  record = {"weak": weak, "runs": [[dataclasses.asdict(r) for r in job] for job in runs]}
  return json.dumps(record, ensure_ascii=False).encode()


def _decode(payload: bytes) -> tuple[list[tuple[TestRun, ...]], str | None]:
  record = json.loads(payload)
  runs = [tuple(TestRun(**(r | {"verdict": Verdict(r["verdict"])})) for r in job) for job in record["runs"]]
  return runs, record["weak"]


class SharedSandbox:
  """A host's sandbox pool, run as one grader across the processes of `group`.

  `run_many` is a collective: every process calls it with the same jobs in the same order. Everything else
  is the local pool's (use `Sandbox` directly for work only one host does).

  Args:
    pool: this host's sandbox.
    group: the run's processes.
  """

  def __init__(self, pool: Sandbox, group: ProcessGroup):
    self.pool, self.group = pool, group
    self._weak = pool.weak
    self.jobs_run_here = 0

  @property
  def weak(self) -> str | None:
    """Why some host's sandbox is weaker than designed (as of the last exchange), or None."""
    return self._weak

  def describe(self) -> dict:
    description = self.pool.describe()
    return description | {"weak": self._weak, "hosts": self.group.count}

  def run_many(
    self, jobs: Sequence[ExecutionJob], stop_on_failure: bool = False, progress: bool = False
  ) -> list[tuple[TestRun, ...]]:
    """Every job's verdicts, in the order of `jobs`; this host runs the jobs of its share only."""
    mine = self.group.share(len(jobs))
    runs = self.pool.run_many([jobs[i] for i in mine], stop_on_failure=stop_on_failure, progress=progress)
    self.jobs_run_here += len(mine)
    gathered = [_decode(payload) for payload in self.group.allgather(_encode(runs, self.pool.weak))]
    reasons = sorted({weak for _, weak in gathered if weak})
    self._weak = "; ".join(reasons) or None
    merged: list[tuple[TestRun, ...] | None] = [None] * len(jobs)
    for host, (host_runs, _) in enumerate(gathered):
      for i, job_runs in zip(range(host, len(jobs), self.group.count), host_runs, strict=True):
        merged[i] = job_runs
    return merged

  def close(self) -> None:
    self.pool.close()

  def __enter__(self) -> SharedSandbox:
    return self

  def __exit__(self, *exc_info):
    self.close()


def shared(pool: Sandbox, group: ProcessGroup | None) -> Sandbox | SharedSandbox:
  """`pool` shared across `group`, or `pool` itself when one process grades alone."""
  return pool if group is None or group.count == 1 else SharedSandbox(pool, group)
