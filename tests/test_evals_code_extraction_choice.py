"""Which fenced block is graded: the last one that answers the problem, not a usage example or note after it."""

import pytest

from ssd_jax.data.problem_files import load_problem_file
from ssd_jax.evals.code_extraction import assemble_program, extract_code
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.sandbox import SandboxLimits

F = "```"
HE = (
  "def has_close_elements(numbers, threshold):\n"
  "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])\n"
)
HE_BODY = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])\n"
HE_WRONG = "def has_close_elements(numbers, threshold):\n    return False\n"
STDIN = "import sys\n\nn, *a = map(int, sys.stdin.read().split())\nprint(sum(a))\nprint(sum(a) / n)\n"
STDIN_WRONG = "n = int(input())\nprint(n)\n"
LC = (
  "class Solution:\n    def sumPositive(self, nums: List[int]) -> int:\n        return sum(x for x in nums if x > 0)\n"
)
METHOD = "def sumPositive(self, nums):\n    return sum(x for x in nums if x > 0)\n"
INDENTED_METHOD = "".join(f"    {line}\n" for line in METHOD.splitlines())
USAGE = "print(has_close_elements([1.0, 2.0, 3.0], 0.5))\n"

# (id, problem, completion, code graded): a block after the solution that does not answer the problem.
AFTER_THE_SOLUTION = [
  ("usage_example", "he", f"{F}python\n{HE}{F}\n\nExample usage:\n{F}python\n{USAGE}{F}\n", HE),
  (
    "assert_block",
    "he",
    f"{F}python\n{HE}{F}\n\nTests:\n{F}python\nassert has_close_elements([1.0, 2.0], 0.5) is False\nprint('ok')\n{F}\n",
    HE,
  ),
  (
    "doctest_block",
    "he",
    f"{F}python\n{HE}{F}\n\nExample:\n{F}\n>>> has_close_elements([1.0, 2.0], 0.5)\nFalse\n{F}\n",
    HE,
  ),
  ("output_block", "he", f"{F}python\n{HE}{F}\n\nOutput:\n{F}\nFalse\nTrue\n{F}\n", HE),
  (
    "sample_io",
    "st",
    f"{F}python\n{STDIN}{F}\n\nFor the input\n{F}\n3\n1 2 3\n{F}\nit prints\n{F}\n6\n2\n{F}\n",
    STDIN,
  ),
  ("sample_in_python_block", "st", f"{F}python\n{STDIN}{F}\n\nSample input:\n{F}python\n3\n1 2 3\n{F}\n", STDIN),
  ("complexity_note", "st", f"{F}python\n{STDIN}{F}\n\nComplexity:\n{F}python\n# O(N) time, O(N) memory\n{F}\n", STDIN),
  (
    "solution_usage",
    "lc",
    f"{F}python\n{LC}{F}\n\nExample:\n{F}python\nsol = Solution()\nprint(sol.sumPositive([1, -2, 3]))  # 4\n{F}\n",
    LC,
  ),
  # A complete block that answers nothing gives way to the solution cut off at the end.
  ("cut_off_solution", "st", f"Input format:\n{F}\nN\nA_1 ... A_N\n{F}\n\n{F}python\n{STDIN}", STDIN),
]
# Fences LiveCodeBench's line rule reads but CommonMark does not.
FENCE_LINES = [
  ("closing_fence_with_text", "he", f"{F}python\n{HE}{F} That's it.\n", HE),
  ("python_filename_tag", "he", f"{F}python:solution.py\n{HE}{F}\n\nRun:\n{F}bash\npython solution.py\n{F}\n", HE),
  ("python_attribute_tag", "he", f"{F}python{{.numberLines}}\n{HE}{F}\n\n{F}bash\npython solution.py\n{F}\n", HE),
]
# What the choice must not change.
GUARDS = [
  (
    "wrong_then_corrected",
    "he",
    f"First try:\n{F}python\n{HE_WRONG}{F}\nThat ignores the threshold:\n{F}python\n{HE}{F}\n",
    HE,
  ),
  ("right_then_wrong", "he", f"{F}python\n{HE}{F}\nSimpler:\n{F}python\n{HE_WRONG}{F}\n", HE_WRONG),
  ("body_only_under_starter", "he", f"{F}python\n{HE_BODY}{F}\n", HE_BODY),
  ("two_stdin_solutions", "st", f"{F}python\n{STDIN_WRONG}{F}\nThe mean too:\n{F}python\n{STDIN}{F}\n", STDIN),
  # A draft in the reasoning defines the entry point; the answer after it is what counts, even body-only.
  ("thinking_draft", "he", f"<think>\n{F}python\n{HE}{F}\n</think>\n\n{F}python\n{HE_BODY}{F}\n", HE_BODY),
  ("unclosed_thinking", "he", f"<think>\n{F}python\n{HE}{F}\nBut wait", ""),
]
CASES = AFTER_THE_SOLUTION + FENCE_LINES + GUARDS


@pytest.fixture(scope="module")
def problems():
  livecodebench = {p.task_id: p for p in load_problem_file("tests/fixtures/livecodebench_mini.jsonl")}
  return {
    "he": load_problem_file("humaneval")[0],
    "st": livecodebench["lcb_fixture_abc_sum"],
    "lc": livecodebench["lcb_fixture_sum_positive"],
  }


@pytest.mark.parametrize("key,completion,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_block_that_answers_the_problem_is_graded(problems, key, completion, expected):
  assert extract_code(completion, problems[key]) == expected


@pytest.mark.parametrize("completion,expected", [c[2:] for c in FENCE_LINES], ids=[c[0] for c in FENCE_LINES])
def test_fence_lines_without_a_problem(completion, expected):
  assert extract_code(completion, None) == expected


def test_without_a_problem_the_last_block_wins():
  completion = AFTER_THE_SOLUTION[0][2]
  assert extract_code(completion, None) == extract_code(completion) == USAGE


@pytest.mark.parametrize("method", [METHOD, INDENTED_METHOD], ids=["column_0", "indented"])
def test_a_method_answer_goes_under_the_solution_class(problems, method):
  problem = problems["lc"]
  program = assemble_program(problem, extract_code(f"{F}python\n{method}{F}\n", problem))
  assert program == f"{problem.program_prefix}class Solution:\n{INDENTED_METHOD}"


def test_verdicts(problems):
  # Through the real grader; a method alone under `class Solution` is graded too.
  cases = [*CASES, ("method_only", "lc", f"{F}python\n{INDENTED_METHOD}{F}\n", None)]
  completions = {}
  for _, key, completion, _ in cases:
    completions.setdefault(problems[key].task_id, []).append(completion)
  limits = SandboxLimits(timeout_s=10, cpu_time_s=10)
  by_task_id = evaluate(list(problems.values()), completions, limits=limits, workers=2).by_task_id()
  samples = {key: iter(by_task_id[problem.task_id].samples) for key, problem in problems.items()}
  passed = {name: next(samples[key]).passed for name, key, _, _ in cases}
  assert passed == {name: name not in ("right_then_wrong", "unclosed_thinking") for name, _, _, _ in cases}
