"""Execution feedback: what a model needs to know about a failed attempt, in bounded text."""

from __future__ import annotations

from collections.abc import Sequence

from ssd_jax.data.problems import TestCase
from ssd_jax.evals.verdicts import TestRun, Verdict

MAX_FEEDBACK_CHARS = 2000
MAX_FIELD_CHARS = 500
MAX_FAILURES_SHOWN = 2


def _clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
  text = text.rstrip()
  if len(text) <= limit:
    return text
  return text[: limit // 2] + "\n...\n" + text[-limit // 2 :]


def describe_failure(test: TestCase, run: TestRun) -> str:
  """One failing test: what ran, what was expected, what happened."""
  lines = [f"Test {run.name}: {run.verdict.value}"]
  if test.is_stdio:
    lines.append(f"Input:\n{_clip(test.stdin or '')}")
  else:
    lines.append(f"Test code:\n{_clip(test.code)}")
  if test.expected_stdout is not None and run.verdict == Verdict.FAILED:
    lines.append(f"Expected output:\n{_clip(test.expected_stdout)}")
    lines.append(f"Actual output:\n{_clip(run.stdout)}")
  if run.message:
    lines.append(_clip(run.message))
  if run.stderr.strip() and run.stderr.strip() not in run.message:
    lines.append(f"Stderr:\n{_clip(run.stderr)}")
  return "\n".join(lines)


def format_feedback(tests: Sequence[TestCase], runs: Sequence[TestRun], max_chars: int = MAX_FEEDBACK_CHARS) -> str:
  """Feedback text for one attempt: a verdict summary and the first failing tests.

  Args:
    tests: the tests that ran, in order.
    runs: their results, aligned with ``tests``.
    max_chars: the cap on the returned text.
  """
  if len(tests) != len(runs):
    raise ValueError(f"format_feedback: {len(tests)} tests but {len(runs)} results")
  if not runs:
    return "No tests were run."
  passed = sum(r.passed for r in runs)
  if passed == len(runs):
    return f"All {len(runs)} tests passed."
  failed = [(t, r) for t, r in zip(tests, runs) if not r.passed and r.verdict != Verdict.SKIPPED]
  parts = [f"{passed} of {len(runs)} tests passed."]
  parts += [describe_failure(t, r) for t, r in failed[:MAX_FAILURES_SHOWN]]
  text = "\n\n".join(parts)
  return text if len(text) <= max_chars else text[: max_chars - 4] + "\n..."
