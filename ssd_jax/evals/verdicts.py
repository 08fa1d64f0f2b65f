"""Per-test verdicts, decided in the grader: output comparison, and what the sandbox and checker reported."""

from __future__ import annotations

import dataclasses
import decimal
import enum

from ssd_jax.data.problems import TestCase
from ssd_jax.evals.sandbox_wire import SHOWN_TEXT_CHARS


class Verdict(str, enum.Enum):
  """Outcome of one test."""

  PASSED = "passed"
  FAILED = "failed"  # ran to completion but gave a wrong answer / failed an assertion
  ERROR = "error"  # raised, crashed, exited early, or exceeded the output limit
  TIMEOUT = "timeout"  # wall-clock or CPU-time limit
  MEMORY = "memory"  # memory limit exceeded
  SKIPPED = "skipped"  # not run (an earlier test failed with stop_on_failure)
  UNVERIFIABLE = "unverifiable"  # the test needs more than data from the program; never counts as passed


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
    waited_s: how long the test's process and its check were ready to run but waited for a CPU (held back
      by other processes); 0 when unknown, and when the test started processes or threads of its own.
  """

  __test__ = False  # not a pytest class

  name: str
  verdict: Verdict
  message: str = ""
  stdout: str = ""
  stderr: str = ""
  duration_s: float = 0.0
  waited_s: float = 0.0

  def __post_init__(self):
    # The texts come from the program: lone surrogates would break every later encode (reports, prompts).
    # Cut only here, after the comparison has read the whole output.
    for field in ("message", "stdout", "stderr"):
      text = getattr(self, field)
      object.__setattr__(self, field, text.encode("utf-8", "replace").decode("utf-8")[:SHOWN_TEXT_CHARS])

  @property
  def passed(self) -> bool:
    return self.verdict == Verdict.PASSED


def normalize_output(text: str) -> list[list[str]]:
  """Splits output into lines of whitespace-separated tokens, dropping blank lines at the end."""
  return [line.split() for line in text.strip().splitlines()]


def stripped_lines(text: str) -> list[str]:
  """Output as LiveCodeBench compares it: surrounding whitespace stripped, then each line stripped."""
  return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[decimal.Decimal] | None:
  """The line's tokens as numbers, or None; 'NaN' and 'sNaN' are not numbers here (sNaN raises in ==)."""
  try:
    numbers = [decimal.Decimal(token) for token in line.split()]
  except (decimal.InvalidOperation, ValueError):
    return None
  return None if any(number.is_nan() for number in numbers) else numbers


def _lines_equal(got: str, want: str) -> bool:
  """LiveCodeBench's rule: equal after stripping, else equal as whitespace-separated decimal numbers."""
  if got == want:
    return True
  got_numbers, want_numbers = _decimals(got), _decimals(want)
  return got_numbers is not None and want_numbers is not None and got_numbers == want_numbers


def outputs_match(actual: str, expected: str) -> bool:
  """Compares program output with the expected output line by line, as LiveCodeBench grades stdio."""
  actual_lines, expected_lines = stripped_lines(actual), stripped_lines(expected)
  return len(actual_lines) == len(expected_lines) and all(map(_lines_equal, actual_lines, expected_lines))


def first_difference(actual: str, expected: str) -> str:
  """Describes where the output first differs from the expected one, for feedback."""
  actual_lines, expected_lines = stripped_lines(actual), stripped_lines(expected)
  if len(actual_lines) != len(expected_lines):
    return f"output has {len(actual_lines)} lines, expected {len(expected_lines)}"
  for line_no, (got, want) in enumerate(zip(actual_lines, expected_lines), start=1):
    if not _lines_equal(got, want):
      return f"line {line_no}: expected {want!r}, got {got!r}"
  return "outputs match"


MESSAGE_CHARS = 4000
OUTPUT_LIMIT = "output limit exceeded: the program printed more than the sandbox reads (max_output_bytes)"
STATUS_TO_VERDICT = {
  "failed": Verdict.FAILED,
  "error": Verdict.ERROR,
  "timeout": Verdict.TIMEOUT,
  "memory": Verdict.MEMORY,
  "unverifiable": Verdict.UNVERIFIABLE,
}


def program_died(loaded: dict | None, end: dict) -> dict:
  """The checker's answer to a pending call when the program is gone: why it ended (its load or exit)."""
  if loaded is not None and loaded.get("loaded") is not True:
    status = loaded.get("status") if loaded.get("status") in ("error", "memory", "timeout") else "error"
    return {"died": status, "message": str(loaded.get("message") or "the program did not load")[:MESSAGE_CHARS]}
  status = end["status"] if end["status"] != "completed" else "error"
  message = end["message"] or "the program exited before the test finished"
  return {"died": status, "message": message}


def _times(end: dict, result: dict | None = None) -> dict:
  """The test's wall time, and how long its process (`end`) and its check (`result`) waited for a CPU."""
  waited_s = 0.0  # unknown: the kernel keeps no run delay, or the program started processes or threads
  if end.get("waited_s") is not None:
    waited_s = float(end["waited_s"]) + float((result or {}).get("waited_s") or 0.0)
  return {"duration_s": float(end.get("duration_s", 0.0)), "waited_s": waited_s}


def check_verdict(test: TestCase, loaded: dict | None, end: dict, result: dict) -> TestRun:
  """Verdict of an assertion test from the program's load report, its exit, and the checker's result."""
  common = dict(stdout=result.get("stdout", ""), stderr=end.get("stderr", ""), **_times(end, result))
  if loaded is None or not loaded.get("loaded"):
    died = program_died(loaded, end)
    return TestRun(test.name, STATUS_TO_VERDICT.get(died["died"], Verdict.ERROR), died["message"], **common)
  status = result["status"]
  if status != "completed":
    return TestRun(test.name, STATUS_TO_VERDICT.get(status, Verdict.ERROR), result.get("message", ""), **common)
  if test.expected_stdout is not None and result.get("stdout_truncated"):
    return TestRun(test.name, Verdict.ERROR, OUTPUT_LIMIT, **common)
  if test.expected_stdout is None or outputs_match(common["stdout"], test.expected_stdout):
    return TestRun(test.name, Verdict.PASSED, **common)
  message = "wrong output: " + first_difference(common["stdout"], test.expected_stdout)
  return TestRun(test.name, Verdict.FAILED, message, **common)


def script_verdict(test: TestCase, end: dict) -> TestRun:
  """Verdict of a stdio test: how the script ended, then its output against the expected one."""
  stdout, stderr = end.get("stdout", ""), end.get("stderr", "")
  common = dict(stdout=stdout, stderr=stderr, **_times(end))
  status = end["status"]
  if status != "completed":
    message = end.get("message", "")
    if status == "error" and stderr.strip():
      message = f"{message}\n{stderr.strip()[-2000:]}".strip()
    return TestRun(test.name, STATUS_TO_VERDICT.get(status, Verdict.ERROR), message, **common)
  if end.get("stdout_truncated"):  # never compared: the cut could hide a wrong line or drop right ones
    return TestRun(test.name, Verdict.ERROR, OUTPUT_LIMIT, **common)
  if outputs_match(stdout, test.expected_stdout):
    return TestRun(test.name, Verdict.PASSED, **common)
  message = "wrong output: " + first_difference(stdout, test.expected_stdout)
  return TestRun(test.name, Verdict.FAILED, message, **common)
