"""Distinct programs and behaviours on hand-written sets with known answers."""

import pytest

from ssd_jax.evals.diversity import (
  behaviour_signature,
  count_distinct_behaviours,
  count_distinct_programs,
  normalize_program,
)
from ssd_jax.evals.verdicts import TestRun, Verdict

SAME_PROGRAM_SPELLED_FOUR_WAYS = [
  "def add(a, b):\n    return a + b\n",
  "def add(x, y):\n    # sum them\n    return x + y\n",
  'def plus(first, second):\n    """Adds."""\n    return first + second\n',
  "def add(a: int, b: int) -> int:\n\n    return (a + b)  # parentheses do not matter\n",
]
DIFFERENT_PROGRAMS = [
  "def add(a, b):\n    return b + a\n",  # operand order differs
  "def add(a, b):\n    return sum([a, b])\n",  # a different builtin
  "def add(a, b):\n    return len([a, b])\n",  # builtins keep their names: len != sum
  "def add(a, b:\n",  # does not parse
]


def test_renaming_comments_docstrings_annotations_are_ignored():
  assert count_distinct_programs(SAME_PROGRAM_SPELLED_FOUR_WAYS) == 1


def test_distinct_programs_count():
  assert count_distinct_programs(SAME_PROGRAM_SPELLED_FOUR_WAYS + DIFFERENT_PROGRAMS) == 5
  assert count_distinct_programs([]) == 0


def test_imported_names_and_attributes():
  a = "import math as m\ndef f(x):\n    return m.sqrt(x)\n"
  b = "import math as mm\ndef g(y):\n    return mm.sqrt(y)\n"
  c = "import math as m\ndef f(x):\n    return m.floor(x)\n"
  assert normalize_program(a) == normalize_program(b) != normalize_program(c)


def run(verdict, stdout="", message=""):
  return TestRun("t", verdict, message=message, stdout=stdout)


def test_distinct_behaviours():
  samples = [
    [run(Verdict.PASSED, "1\n2"), run(Verdict.PASSED, "3")],
    [run(Verdict.PASSED, "1 \n  2\n"), run(Verdict.PASSED, " 3 ")],  # same output after whitespace normalisation
    [run(Verdict.PASSED, "1\n2"), run(Verdict.FAILED, "4", "wrong output")],
    [run(Verdict.ERROR, "", "Traceback...\nZeroDivisionError: division by zero"), run(Verdict.TIMEOUT)],
    [run(Verdict.ERROR, "", "Traceback (other line)\nZeroDivisionError: division by zero"), run(Verdict.TIMEOUT)],
    [run(Verdict.ERROR, "", "Traceback\nIndexError: list index out of range"), run(Verdict.TIMEOUT)],
  ]
  assert count_distinct_behaviours(samples) == 4
  assert behaviour_signature(samples[0]) == behaviour_signature(samples[1])


@pytest.mark.parametrize(
  "first, second",
  [
    ("def f(x):\n    y: int = x\n    return y", "def f(a):\n    b = a\n    return b"),  # annotated assignment
    (
      "def f(x):\n    try:\n        return 1 / x\n    except ZeroDivisionError as e:\n        return str(e)",
      "def f(a):\n    try:\n        return 1 / a\n    except ZeroDivisionError as err:\n        return str(err)",
    ),
    ("def f(x, y=1):\n    return x + y\nf(1, y=2)", "def g(a, b=1):\n    return a + b\ng(1, b=2)"),  # keyword names
    ("def f():\n    global t\n    t = 1", "def f():\n    global u\n    u = 1"),
    (
      "def f(x):\n    match x:\n        case [a, *rest]:\n            return rest\n        case {'k': v, **others}:\n"
      "            return others",
      "def f(y):\n    match y:\n        case [b, *tail]:\n            return tail\n        case {'k': w, **more}:\n"
      "            return more",
    ),
  ],
)
def test_renaming_covers_every_binding(first, second):
  assert normalize_program(first) == normalize_program(second)


CLASS_SOLUTION = """
class Solution:
    limit = 10

    def count(self, xs):
        self.total = 0
        for x in xs:
            self.dfs(x)
        return min(self.total, Solution.limit)

    def dfs(self, x):
        self.total += x
"""


def test_own_methods_and_attributes_are_renamed_where_they_are_used():
  renamed = CLASS_SOLUTION.replace("dfs", "go").replace("total", "acc").replace("limit", "cap")
  assert normalize_program(CLASS_SOLUTION) == normalize_program(renamed)
  other_method = CLASS_SOLUTION.replace("self.dfs(x)", "self.count(x)")  # calls a different method of its own
  assert normalize_program(CLASS_SOLUTION) != normalize_program(other_method)


def test_library_attributes_keep_their_names():
  a = "def f(xs, x):\n    xs.append(x)\n    return xs"
  b = "def f(xs, x):\n    xs.extend(x)\n    return xs"
  assert normalize_program(a) != normalize_program(b)
  # A variable that happens to share a method's name does not rename the method.
  c = "def f(s, x):\n    count = 1\n    return s.count(x) + count"
  d = "def f(s, x):\n    n = 1\n    return s.count(x) + n"
  assert normalize_program(c) == normalize_program(d)


def test_library_keywords_keep_their_names():
  a = "def f(xs):\n    return sorted(xs, key=len)"
  b = "def f(xs):\n    return sorted(xs, reverse=len)"
  assert normalize_program(a) != normalize_program(b)
