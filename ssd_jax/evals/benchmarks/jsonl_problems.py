"""A simple JSONL problem format, one problem per line.

Fields: ``task_id``, ``question``; optional ``starter_code``, ``entry_point``,
``difficulty``, ``reference_solution``, ``contest_date``, ``program_prefix``; ``tests`` and
``public_tests`` as lists of test objects (``name``, ``code``, ``stdin``,
``expected_stdout``) or as one string of assertion code.
"""

from __future__ import annotations

import json

from ssd_jax.evals.problems import Problem, TestCase

_TEST_FIELDS = {"name", "code", "stdin", "expected_stdout"}
_PROBLEM_FIELDS = {
  "task_id",
  "question",
  "starter_code",
  "entry_point",
  "tests",
  "difficulty",
  "reference_solution",
  "contest_date",
  "public_tests",
  "program_prefix",
}


def _tests(value, where: str) -> tuple[TestCase, ...]:
  if isinstance(value, str):
    return (TestCase(name="tests", code=value),) if value.strip() else ()
  tests = []
  for i, item in enumerate(value or ()):
    unknown = set(item) - _TEST_FIELDS
    if unknown:
      raise ValueError(f"{where}[{i}]: unknown test fields {sorted(unknown)}")
    tests.append(TestCase(**{"name": f"test_{i}", **item}))
  return tuple(tests)


def problem_from_dict(record: dict, where: str = "problem") -> Problem:
  """Builds a Problem from one JSON object, naming any unknown or missing field."""
  unknown = set(record) - _PROBLEM_FIELDS
  if unknown:
    raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
  for required in ("task_id", "question"):
    if required not in record:
      raise ValueError(f"{where}: missing field {required!r}")
  fields = dict(record)
  fields["tests"] = _tests(record.get("tests"), f"{where}.tests")
  fields["public_tests"] = _tests(record.get("public_tests"), f"{where}.public_tests")
  return Problem(**fields)


def load_jsonl_problems(path: str) -> list[Problem]:
  """Loads problems in the simple JSONL format."""
  with open(path, encoding="utf-8") as f:
    return [problem_from_dict(json.loads(line), f"{path}:{n}") for n, line in enumerate(f, 1) if line.strip()]


def problem_to_dict(problem: Problem) -> dict:
  """The JSON object for ``problem`` in this format (inverse of ``problem_from_dict``)."""

  def tests(items):
    return [{k: v for k, v in vars(t).items() if v is not None} for t in items]

  record = {k: v for k, v in vars(problem).items() if k not in ("tests", "public_tests")}
  return {**record, "tests": tests(problem.tests), "public_tests": tests(problem.public_tests)}
