"""Problem files (LiveCodeBench format incl. compressed tests, simple JSONL), prompts, code extraction."""

import base64
import json
import pickle
import zlib

import pytest

from ssd_jax.data.chat import DEFAULT_SYSTEM_PROMPT, problem_to_messages
from ssd_jax.data.livecodebench import decode_test_cases
from ssd_jax.data.problem_files import load_problem_file as load_problems
from ssd_jax.data.problem_files import problem_to_dict
from ssd_jax.evals.code_extraction import assemble_program, extract_code
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.sandbox import SandboxLimits


def compress(cases):
  return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


LCB_RECORDS = [
  {
    "question_id": "abc001_a",
    "question_title": "Double",
    "question_content": "Print twice the number.",
    "platform": "atcoder",
    "contest_date": "2024-08-10T00:00:00",
    "starter_code": "",
    "difficulty": "easy",
    "metadata": "{}",
    "public_test_cases": json.dumps([{"input": "2\n", "output": "4\n", "testtype": "stdin"}]),
    "private_test_cases": compress(
      [{"input": "5\n", "output": "10\n", "testtype": "stdin"}, {"input": "0\n", "output": "0\n", "testtype": "stdin"}]
    ),
  },
  {
    "question_id": "lc_two_sum",
    "question_title": "Add",
    "question_content": "Add two numbers.",
    "platform": "leetcode",
    "contest_date": "2025-02-01T00:00:00",
    "starter_code": "class Solution:\n    def add(self, a: int, b: int) -> int:\n        ",
    "difficulty": "Medium",
    "metadata": json.dumps({"func_name": "add"}),
    "public_test_cases": json.dumps([{"input": "1\n2", "output": "3", "testtype": "functional"}]),
    "private_test_cases": json.dumps([{"input": "[1, 2]\n[3]", "output": "[1, 2, 3]", "testtype": "functional"}]),
  },
]


@pytest.fixture()
def lcb_path(tmp_path):
  path = tmp_path / "lcb.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in LCB_RECORDS) + "\n")
  return str(path)


def test_decode_compressed_tests():
  cases = [{"input": "1", "output": "2", "testtype": "stdin"}]
  assert decode_test_cases(compress(cases)) == cases
  assert decode_test_cases(json.dumps(cases)) == cases
  evil = base64.b64encode(zlib.compress(pickle.dumps(print))).decode()  # a pickled global reference
  with pytest.raises(ValueError):
    decode_test_cases(evil)


def test_livecodebench_loading_and_filters(lcb_path):
  problems = load_problems(lcb_path)
  assert [p.task_id for p in problems] == ["abc001_a", "lc_two_sum"]
  stdio, functional = problems
  assert len(stdio.tests) == 3 and len(stdio.public_tests) == 1 and stdio.tests[1].stdin == "5\n"
  assert functional.entry_point == "add" and functional.difficulty == "medium"
  assert [p.task_id for p in load_problems(lcb_path, difficulties=["Medium"])] == ["lc_two_sum"]
  assert [p.task_id for p in load_problems(lcb_path, start_date="2024-09-01")] == ["lc_two_sum"]
  assert [p.task_id for p in load_problems(lcb_path, end_date="2024-12-31")] == ["abc001_a"]
  with pytest.raises(ValueError, match="start_date"):
    load_problems(lcb_path, start_date="last week")


def test_livecodebench_end_to_end(lcb_path):
  problems = load_problems(lcb_path)
  completions = {
    "abc001_a": [
      "```python\nprint(int(input()) * 2)\n```",
      "print(int(input()) + 2)",
      "```python\r\nprint(int(input()) * 2)\r\n```\r\n",
      "1. Double it:\n   ```python\n   n = int(input())\n   print(n * 2)\n   ```\n",
    ],
    "lc_two_sum": ["```python\nclass Solution:\n    def add(self, a, b):\n        return a + b\n```", "return a - b"],
  }
  result = evaluate(problems, completions, limits=SandboxLimits(timeout_s=5, cpu_time_s=5), workers=2)
  stdio, functional = result.problems
  assert [s.passed for s in stdio.samples] == [True, False, True, True]  # 2+2 == 2*2 but 5+2 != 10
  assert [s.passed for s in functional.samples] == [True, False]
  assert "Expected output:\n10" in stdio.samples[1].feedback


def test_simple_jsonl_roundtrip_and_errors(tmp_path, lcb_path):
  problems = load_problems(lcb_path)
  path = tmp_path / "simple.jsonl"
  path.write_text("\n".join(json.dumps(problem_to_dict(p)) for p in problems) + "\n")
  assert load_problems(str(path)) == problems
  path.write_text(json.dumps({"task_id": "x", "question": "q", "tests": "assert f() == 1", "bogus": 1}) + "\n")
  with pytest.raises(ValueError, match="bogus"):
    load_problems(str(path))


@pytest.mark.parametrize(
  "completion,expected",
  [
    ("plain code", "plain code"),
    ("text\n```python\nfirst\n```\nmore\n```py\nsecond\n```\nbye", "second\n"),
    ("<think>```python\nscratch\n```</think>\n```python\nanswer\n```", "answer\n"),
    ("```python\nfirst\n```\n```python\ncut off mid", "first\n"),  # a complete block beats a cut-off one
    ("```python\ncut off mid", "cut off mid"),
    ("~~~\ntilde\n~~~", "tilde\n"),
    # A block in a list item loses the fence's indentation, and no more: a function body keeps its own.
    ("1. step\n   ```python\n   def f():\n       return 1\n   ```\n", "def f():\n    return 1\n"),
    ("1. step\n  ```python\n      return 1\n  ```", "    return 1\n"),
    ("```python\n    return 1\n```", "    return 1\n"),
    ("1. step\n   ```python\n   def f():\n       ret", "def f():\n    ret"),
    # CRLF line ends, closing fence included; Python runs CRLF source as it is.
    ("```python\r\na=1\r\n```\r\n", "a=1\r\n"),
    ("```python\r\na=1\r\n```\r\nthen\r\n```python\r\nb=2\r\n```", "b=2\r\n"),
  ],
)
def test_extract_code(completion, expected):
  assert extract_code(completion) == expected


def test_assemble_program_and_prompt(lcb_path):
  humaneval_like = load_problems("humaneval")[0]
  continuation = assemble_program(humaneval_like, "    return True\n")
  assert continuation.startswith(humaneval_like.starter_code) and continuation.endswith("    return True\n")
  full = assemble_program(humaneval_like, "def has_close_elements(numbers, threshold):\n    return True\n")
  assert full.index("from typing import List") < full.index("return True")
  _, functional = load_problems(lcb_path)
  whole_class = "class Solution:\n    def add(self, a, b):\n        return a + b\n"
  # The starter alone does not parse, so the answer stands alone after LiveCodeBench's import prefix.
  assert assemble_program(functional, whole_class) == functional.program_prefix + whole_class
  messages = problem_to_messages(functional)
  assert [m["role"] for m in messages] == ["system", "user"] and messages[0]["content"] == DEFAULT_SYSTEM_PROMPT
  assert functional.starter_code.rstrip() in messages[1]["content"] and "Add two numbers." in messages[1]["content"]
