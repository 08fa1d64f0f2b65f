"""The samples the shared-grading test grades: HumanEval problems with right, wrong and crashing completions."""

from __future__ import annotations

from ssd_jax.data.problem_files import load_humaneval_problems
from ssd_jax.evals import EvalResult

NUM_PROBLEMS = 4


def problems_and_completions():
  """(problems, task_id -> 3 completions): the canonical solution, one that returns None, one that raises."""
  problems = load_humaneval_problems()[:NUM_PROBLEMS]
  completions = {
    p.task_id: [p.reference_solution, "def f():\n  return None\n", "raise RuntimeError('no')\n"] for p in problems
  }
  return problems, completions


def verdicts(result: EvalResult) -> dict[str, list[list[str]]]:
  return {p.task_id: [[run.verdict.value for run in s.tests] for s in p.samples] for p in result.problems}


def totals(summary: dict) -> dict:
  return {"pass_at_k": summary["pass_at_k"], "num_problems": summary["num_problems"]}
