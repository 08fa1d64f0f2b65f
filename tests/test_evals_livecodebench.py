"""Verdicts on a small LiveCodeBench-format fixture agree with LiveCodeBench's own grading rules.

The rules (lcb_runner/evaluation/testing_util.py): every program runs after LiveCodeBench's import prefix;
functional problems call ``Solution().<func_name>(*json inputs)`` and compare the return value with the
expected JSON value (a returned tuple counts as a list, nested tuples do not), whatever the program prints;
stdio output is compared line by line after stripping, each line either equal or equal as a list of
decimal numbers, and SystemExit ends a script normally; each test has its own time limit.
"""

import gzip
import pathlib

import pytest

from ssd_jax.data.livecodebench import LCB_PROGRAM_PREFIX, load_livecodebench
from ssd_jax.data.problem_files import load_problem_file
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.sandbox import Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import Verdict, outputs_match

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "livecodebench_mini.jsonl"
LIMITS = SandboxLimits(timeout_s=2.0, cpu_time_s=2.0, memory_mb=512)


def solution(body: str, name: str = "sumPositive", annotation: str = "nums: List[int]") -> str:
  return f"```python\nclass Solution:\n    def {name}(self, {annotation}):\n" + body + "```"


# task_id -> [(label, completion, passes under LiveCodeBench's rules, verdict of the first non-passing test)]
CASES = {
  "lcb_fixture_sum_positive": [
    ("correct, keeps the starter's List[int]", solution("        return sum(x for x in nums if x > 0)\n"), True, None),
    (
      "correct with debug prints",
      solution("        print('debug', nums)\n        return sum(x for x in nums if x > 0)\n"),
      True,
      None,
    ),
    (
      "prefix names without imports",
      solution("        return sum(Counter(x for x in nums if x > 0).elements())\n"),
      True,
      None,
    ),
    ("wrong", solution("        return sum(nums)\n"), False, Verdict.FAILED),
    ("infinite loop", solution("        while True:\n            pass\n"), False, Verdict.TIMEOUT),
    ("raises", solution("        return nums[10]\n"), False, Verdict.ERROR),
    (
      "top-level function without Solution",
      "def sumPositive(nums):\n    return sum(x for x in nums if x > 0)\n",
      True,
      None,
    ),
  ],
  "lcb_fixture_split_parity": [
    (
      "tuple for the expected list",
      solution("        return ([x for x in nums if x % 2 == 0], [x for x in nums if x % 2])\n", "splitParity"),
      True,
      None,
    ),
    (
      "nested tuples",
      solution(
        "        return (tuple(x for x in nums if x % 2 == 0), tuple(x for x in nums if x % 2))\n", "splitParity"
      ),
      False,
      Verdict.FAILED,
    ),
  ],
  "lcb_fixture_abc_sum": [
    (
      "correct",
      "n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs))\nprint(sum(xs) / n)\n",
      True,
      None,
    ),
    (
      "trailing spaces and exit()",
      "import sys\nxs = list(map(int, sys.stdin.read().split()[1:]))\nprint(sum(xs), '  ')\nprint(sum(xs) / len(xs))\nexit(0)\n",
      True,
      None,
    ),
    (
      "extra debug line",
      "n = int(input())\nxs = list(map(int, input().split()))\nprint('n =', n)\nprint(sum(xs))\nprint(sum(xs) / n)\n",
      False,
      Verdict.FAILED,
    ),
    ("wrong", "n = int(input())\nprint(n)\nprint(n)\n", False, Verdict.FAILED),
    ("sleeps", "import time\ntime.sleep(60)\n", False, Verdict.TIMEOUT),
  ],
  "lcb_fixture_abc_words": [
    ("correct", "print(*input().split())\n", True, None),
    ("echoes the line as is", "print(input())\n", False, Verdict.FAILED),  # 'x   y' != 'x y': not numbers
  ],
}


@pytest.fixture(scope="module")
def lcb_result():
  problems = load_problem_file(str(FIXTURE))
  completions = {task_id: [completion for _, completion, _, _ in cases] for task_id, cases in CASES.items()}
  with Sandbox(LIMITS, workers=2) as sandbox:
    return problems, evaluate(problems, completions, sandbox=sandbox, stop_on_failure=True)


def test_fixture_loads_with_the_import_prefix(lcb_result):
  problems, _ = lcb_result
  assert [p.task_id for p in problems] == list(CASES)
  assert all(p.program_prefix == LCB_PROGRAM_PREFIX for p in problems)
  assert "from typing import *" in LCB_PROGRAM_PREFIX and "from collections import *" in LCB_PROGRAM_PREFIX
  assert [len(p.tests) for p in problems] == [3, 2, 3, 2]


def test_gzipped_release_file_loads_like_the_plain_one(tmp_path):
  gzipped = tmp_path / "livecodebench_mini.jsonl.gz"
  gzipped.write_bytes(gzip.compress(FIXTURE.read_bytes()))
  expected = load_livecodebench(str(FIXTURE))
  assert load_livecodebench(str(gzipped)) == expected
  assert load_problem_file(str(gzipped)) == expected


@pytest.mark.parametrize("task_id,index", [(t, i) for t, cases in CASES.items() for i in range(len(cases))])
def test_verdict_agrees_with_livecodebench(lcb_result, task_id, index):
  _, result = lcb_result
  label, _, passes, first_failure = CASES[task_id][index]
  sample = result.by_task_id()[task_id].samples[index]
  assert sample.passed == passes, (label, sample.feedback)
  if first_failure is not None:
    failing = [run for run in sample.tests if not run.passed]
    assert failing[0].verdict == first_failure, (label, failing[0])


@pytest.mark.parametrize(
  "actual,expected,match",
  [
    ("6\n2\n", "6\n2", True),
    ("  6  \n2.0\n\n", "6\n2", True),  # lines are stripped; 2.0 == 2 as decimals
    ("1  2\n", "1 2\n", True),  # equal as decimal lists
    ("a  b\n", "a b\n", False),  # not numbers, not equal as stripped lines
    ("6\n\n2\n", "6\n2\n", False),  # an inner blank line is a line
    ("0.1\n", "0.10000000000000001\n", False),  # decimals compare exactly
  ],
)
def test_stdio_comparison_is_livecodebench_rule(actual, expected, match):
  assert outputs_match(actual, expected) == match
