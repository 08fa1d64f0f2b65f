"""All HumanEval canonical solutions pass in the sandbox; the same functions with a `pass` body fail."""

import pytest

from ssd_jax.data.problem_files import load_humaneval_problems as load_humaneval
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.sandbox import Sandbox, SandboxLimits


@pytest.fixture(scope="module")
def humaneval_results():
  problems = load_humaneval()
  completions = {}
  for problem in problems:
    body = problem.reference_solution[len(problem.starter_code) :]
    # a raw continuation, and the same function body replaced by `pass` inside a fenced block
    stub = f"Here is my answer:\n```python\n{problem.starter_code}    pass\n```\n"
    completions[problem.task_id] = [body, stub]
  with Sandbox(SandboxLimits(timeout_s=10.0, cpu_time_s=10.0, memory_mb=1024)) as sandbox:
    result = evaluate(problems, completions, sandbox=sandbox)
  return problems, result


def test_loads_all_164(humaneval_results):
  problems, result = humaneval_results
  assert len(problems) == 164 and len(result.problems) == 164
  assert len({p.task_id for p in problems}) == 164


def test_canonical_solutions_pass(humaneval_results):
  _, result = humaneval_results
  failing = [(p.task_id, p.samples[0].feedback) for p in result.problems if not p.samples[0].passed]
  assert failing == []


def test_pass_bodies_fail(humaneval_results):
  _, result = humaneval_results
  passing = [p.task_id for p in result.problems if p.samples[1].passed]
  assert passing == []
  sample = result.problems[0].samples[1]
  assert sample.completion.startswith("Here is my answer:")  # the raw completion is kept
  assert "pass" in sample.code and "```" not in sample.code
  assert "0 of 1 tests passed" in sample.feedback and "AssertionError" in sample.feedback
