"""Per-test verdicts and the output comparison the parent process decides."""

from __future__ import annotations

import dataclasses
import decimal
import enum


class Verdict(str, enum.Enum):
  """Outcome of one test."""

  PASSED = "passed"
  FAILED = "failed"  # ran to completion but gave a wrong answer / failed an assertion
  ERROR = "error"  # raised, crashed, exited early, or exceeded the output limit
  TIMEOUT = "timeout"  # wall-clock or CPU-time limit
  MEMORY = "memory"  # memory limit exceeded
  SKIPPED = "skipped"  # not run (an earlier test failed with stop_on_failure, or the sandbox died)


@dataclasses.dataclass(frozen=True)
class TestRun:
  """What happened when one test ran.

  Attributes:
    name: the test's name.
    verdict: the outcome.
    message: assertion text, traceback tail, or expected-vs-actual summary.
    stdout: captured standard output (capped); for code tests with an expected
      output, only what the test code printed.
    stderr: captured standard error (capped).
    duration_s: wall time of the test process.
  """

  __test__ = False  # not a pytest class

  name: str
  verdict: Verdict
  message: str = ""
  stdout: str = ""
  stderr: str = ""
  duration_s: float = 0.0

  @property
  def passed(self) -> bool:
    return self.verdict == Verdict.PASSED


def normalize_output(text: str) -> list[list[str]]:
  """Splits output into lines of whitespace-separated tokens, dropping blank lines at the end."""
  return [line.split() for line in text.strip().splitlines()]


def _tokens_equal(actual: str, expected: str) -> bool:
  if actual == expected:
    return True
  try:  # "1.0" and "1.00" are the same number; no tolerance beyond that
    return decimal.Decimal(actual) == decimal.Decimal(expected)
  except (decimal.InvalidOperation, ValueError):
    return False


def _lines_equal(got: list[str], want: list[str]) -> bool:
  return len(got) == len(want) and all(_tokens_equal(a, e) for a, e in zip(got, want))


def outputs_match(actual: str, expected: str) -> bool:
  """Compares program output with the expected output, ignoring whitespace layout within lines."""
  actual_lines, expected_lines = normalize_output(actual), normalize_output(expected)
  return len(actual_lines) == len(expected_lines) and all(
    _lines_equal(got, want) for got, want in zip(actual_lines, expected_lines)
  )


def first_difference(actual: str, expected: str) -> str:
  """Describes where the output first differs from the expected one, for feedback."""
  actual_lines, expected_lines = normalize_output(actual), normalize_output(expected)
  for line_no, (got, want) in enumerate(zip(actual_lines, expected_lines), start=1):
    if not _lines_equal(got, want):
      return f"line {line_no}: expected {' '.join(want)!r}, got {' '.join(got)!r}"
  if len(actual_lines) < len(expected_lines):
    return f"output has {len(actual_lines)} lines, expected {len(expected_lines)}"
  return f"output has {len(actual_lines)} lines, expected only {len(expected_lines)}"
