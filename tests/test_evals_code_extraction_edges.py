"""Code extraction and program assembly on awkward completions: cut-off blocks, other languages, starters."""

import pytest

from ssd_jax.data.problem_files import load_problem_file
from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.evals.code_extraction import assemble_program, extract_code
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.sandbox import SandboxLimits

SOLUTION = "def has_close_elements(numbers, threshold):\n    return False\n"
METHOD_STARTER = "class Solution:\n    def add(self, a: int, b: int) -> int:\n        "


def compiles(program: str) -> bool:
  # compile(), not ast.parse(): only the compiler checks where `from __future__` imports stand.
  try:
    compile(program, "solution.py", "exec")
  except SyntaxError:
    return False
  return True


@pytest.fixture(scope="module")
def humaneval_0():
  return load_problem_file("humaneval")[0]


@pytest.mark.parametrize(
  "completion,expected",
  [
    # A usage example cut off at the token limit does not replace the complete solution before it.
    (f"```python\n{SOLUTION}```\n\nExample usage:\n```python\nprint(has_close_elements([1.0, 2.0], 0.5", SOLUTION),
    (f"```python\n{SOLUTION}```\n```\n", SOLUTION),  # an empty fence opened last
    # An open block is taken when it is the only candidate.
    ("```bash\npython a.py\n```\n```python\ndef f():\n    ret", "def f():\n    ret"),
  ],
)
def test_complete_block_beats_cut_off_block(completion, expected):
  assert extract_code(completion) == expected


def test_cut_off_usage_example_leaves_a_valid_program(humaneval_0):
  completion = f"Here:\n```python\n{SOLUTION}```\n\nExample usage:\n```python\nprint(has_close_elements([1.0], 0.5"
  assert compiles(assemble_program(humaneval_0, extract_code(completion)))


@pytest.mark.parametrize(
  "completion,expected",
  [
    ("```python\nprint(2)\n```\nRun it:\n```bash\npython solution.py < input.txt\n```\n", "print(2)\n"),
    ("```py\nprint(2)\n```\nOutput:\n```text\n2\n```", "print(2)\n"),
    ("```python3\nprint(2)\n```\n```output\n2\n```\n```sh\nls\n```", "print(2)\n"),
    ("```Python title=solution.py\nprint(2)\n```\n```console\n$ python a.py\n```", "print(2)\n"),
    ("```\nprint(1)\n```\n```bash\nls\n```\n```\nprint(2)\n```", "print(2)\n"),  # untagged blocks count
    ("```cpp\nint main() {}\n```", "int main() {}\n"),  # only other languages: the last block still
  ],
)
def test_blocks_of_other_languages_are_skipped(completion, expected):
  assert extract_code(completion) == expected


@pytest.mark.parametrize(
  "completion",
  [
    "<think>\nDraft:\n```python\nprint(1)\n```\nBut wait, the limit",
    "<think>first</think>\n<think>second try\n```python\nprint(1)\n```",
  ],
)
def test_unclosed_thinking_yields_no_code(completion):
  assert extract_code(completion) == ""


def test_unclosed_thinking_is_graded_as_failing():
  problem = Problem("p", "Print 1.", tests=(TestCase("t", stdin="", expected_stdout="1\n"),))
  completions = {"p": ["<think>\n```python\nprint(1)\n```\nHmm", "<think>ok</think>\n```python\nprint(1)\n```"]}
  result = evaluate([problem], completions, limits=SandboxLimits(timeout_s=5, cpu_time_s=5), workers=1)
  assert [s.passed for s in result.problems[0].samples] == [False, True]
  assert result.problems[0].samples[0].code == ""


def test_indented_continuation_does_not_double_the_starter_indent():
  problem = Problem("lc", "Add.", starter_code=METHOD_STARTER, entry_point="add")
  program = assemble_program(problem, "        total = a + b\n        return total\n")
  assert (
    program
    == "class Solution:\n    def add(self, a: int, b: int) -> int:\n        total = a + b\n        return total\n"
  )
  # A continuation written at the cursor, without indentation, keeps the starter's.
  assert compiles(assemble_program(problem, "total = a + b\n        return total\n"))


def test_future_imports_go_first(humaneval_0):
  program = assemble_program(humaneval_0, f"from __future__ import annotations\n\n{SOLUTION}")
  assert compiles(program) and program.startswith("from __future__ import annotations\n")
  assert program.index("from typing import List") < program.index("return False")
  parenthesized = f"from __future__ import (\n    annotations,\n    division,\n)\n{SOLUTION}"
  assert compiles(assemble_program(humaneval_0, parenthesized))
  # A continuation under a starter that parses on its own.
  problem = Problem("p", "q", starter_code="import math\n\n\n", entry_point="f")
  assert compiles(assemble_program(problem, "from __future__ import annotations\nx: Undefined = math.pi\n"))


def test_future_imports_go_before_livecodebench_import_prefix():
  # LiveCodeBench programs run after its import prefix; an answer's future import must still come first.
  (problem,) = [p for p in load_problem_file("tests/fixtures/livecodebench_mini.jsonl") if p.program_prefix][:1]
  answer = "from __future__ import annotations\nimport sys\nprint(sys.stdin.read())\n"
  program = assemble_program(problem, answer)
  assert compiles(program) and program.startswith("from __future__ import annotations\n" + problem.program_prefix)
  assert program.count("from __future__") == 1


def test_a_think_tag_inside_code_is_text():
  completion = 'Strip the tags:\n```python\ndef strip(s):\n    return s.replace("<think>", "")\n```'
  assert extract_code(completion) == 'def strip(s):\n    return s.replace("<think>", "")\n'
