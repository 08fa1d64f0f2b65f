"""Execution feedback: what a model needs to know about a failed attempt, in bounded text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ssd_jax.data.livecodebench import functional_got, functional_test_io
from ssd_jax.data.problems import TestCase
from ssd_jax.evals.verdicts import TestRun, Verdict

MAX_FEEDBACK_CHARS = 2000
MAX_FIELD_CHARS = 500
MAX_FAILURES_SHOWN = 2

_CUT = "\n...\n"
# Chat control tokens spelled in text (ChatML and Llama 3's `<|im_end|>`, `<|eot_id|>`, reasoning tags): a
# tokenizer reads them as control ids, so a program printing one would open a fake turn in the teacher's
# context. A zero-width space after the `<` keeps the text readable and the ids ordinary.
_CONTROL_TEXT = re.compile(r"<(?=\|[^\s<>|]{1,40}\|>|/?think>)")
_SOLUTION_LINE = re.compile(r'(File "solution\.py", line )(\d+)')


def escape_control_text(text: str) -> str:
  """`text` with every chat control token spelled in it broken by a zero-width space (see `_CONTROL_TEXT`)."""
  return _CONTROL_TEXT.sub("<\u200b", text)


def clip_text(text: str, limit: int) -> str:
  """`text` stripped, at most `limit` characters: head and tail around a cut mark (the head alone when the
  mark does not fit)."""
  text = text.strip()
  if len(text) <= limit:
    return text
  if limit <= len(_CUT):
    return text[:limit]
  half = (limit - len(_CUT)) // 2
  return text[:half] + _CUT + text[len(text) - half :]


def _clip_tail(text: str, limit: int) -> str:
  """`text` stripped, at most `limit` characters, its end kept: a traceback's last line names the error."""
  text = text.strip()
  if len(text) <= limit:
    return text
  if limit <= len(_CUT):
    return text[len(text) - limit :]
  return "...\n" + text[len(text) - limit + 4 :]


def _unshift(message: str, prefix_lines: int) -> str:
  """`message` with solution.py line numbers counted from the model's code, not the grader's prefix."""
  if not prefix_lines:
    return message
  return _SOLUTION_LINE.sub(lambda m: m.group(1) + str(max(1, int(m.group(2)) - prefix_lines)), message)


def describe_failure(test: TestCase, run: TestRun, max_chars: int | None = None, *, prefix_lines: int = 0) -> str:
  """One failing test: what ran, what was expected, what happened.

  A function-style LiveCodeBench test shows its input, expected and returned values, not the harness code.
  Chat control tokens spelled in any field (what the program printed, say) are broken with a zero-width space.

  Args:
    test: the test.
    run: its result.
    max_chars: the cap on the text: every field is clipped alike until it fits, the "Test ...: verdict" line
      is always kept, and a message keeps its end (the error). None: fields are clipped to MAX_FIELD_CHARS.
    prefix_lines: lines the grader put before the model's code (subtracted from solution.py line numbers).
  """
  io = None if test.is_stdio else functional_test_io(test.code)
  got = functional_got(run.message) if io is not None and run.verdict == Verdict.FAILED else None
  fields = []  # (label, text, clip)
  if test.is_stdio:
    fields.append(("Input:\n", test.stdin or "", clip_text))
  elif io is not None:
    fields += [("Input:\n", io[0], clip_text), ("Expected:\n", io[1], clip_text)]
  else:
    fields.append(("Test code:\n", test.code, clip_text))
  if test.expected_stdout is not None and run.verdict == Verdict.FAILED:
    fields += [("Expected output:\n", test.expected_stdout, clip_text), ("Actual output:\n", run.stdout, clip_text)]
  if got is not None:
    fields.append(("Got:\n", got, clip_text))  # The assertion's message says no more than this.
  elif run.message:
    fields.append(("", _unshift(run.message, prefix_lines), _clip_tail))
  if run.stderr.strip() and run.stderr.strip() not in run.message:
    fields.append(("Stderr:\n", _unshift(run.stderr, prefix_lines), _clip_tail))
  fields = [(label, escape_control_text(text or ""), clip) for label, text, clip in fields]
  header = f"Test {run.name}: {run.verdict.value}"

  def render(limit: int) -> str:
    return "\n".join([header] + [label + clip(text, limit) for label, text, clip in fields])

  text = render(MAX_FIELD_CHARS)
  if max_chars is None or len(text) <= max_chars:
    return text
  low, high = 0, MAX_FIELD_CHARS  # The longest field limit that fits; the text grows with it.
  while low < high:
    mid = (low + high + 1) // 2
    low, high = (mid, high) if len(render(mid)) <= max_chars else (low, mid - 1)
  text = render(low)
  return text if len(text) <= max_chars else header[:max_chars]


def _more(count: int) -> str:
  return f"({count} more test{'s' if count > 1 else ''} failed)"


def format_feedback(
  tests: Sequence[TestCase],
  runs: Sequence[TestRun],
  max_chars: int = MAX_FEEDBACK_CHARS,
  *,
  code: str | None = None,
  program_prefix: str = "",
) -> str:
  """Feedback text for one attempt: a verdict summary and the first failing tests, whole.

  The budget goes to whole failures: the first failure always (its fields clipped to fit), then each
  following one only when it fits whole; failures left out are counted. A failure is never cut apart, so no
  test's input is shown next to another's verdict.

  Args:
    tests: the tests that ran, in order.
    runs: their results, aligned with ``tests``.
    max_chars: the cap on the returned text.
    code: the code extracted from the response; "" says none was found (the failures, then, are only the
      starter's or the prefix's errors and are not shown); None: not known.
    program_prefix: code the grader put before the model's (LiveCodeBench's imports); traceback line numbers
      in solution.py are counted from after it.
  """
  if len(tests) != len(runs):
    raise ValueError(f"format_feedback: {len(tests)} tests but {len(runs)} results")
  if not runs:
    return "No tests were run."
  passed = sum(r.passed for r in runs)
  if passed == len(runs):
    return f"All {len(runs)} tests passed."
  summary = f"{passed} of {len(runs)} tests passed."
  if code is not None and not code.strip():
    return f"No code was found in the response (no code block), so nothing ran. {summary}"[:max_chars]
  prefix_lines = program_prefix.count("\n")
  failed = [(t, r) for t, r in zip(tests, runs) if not r.passed and r.verdict != Verdict.SKIPPED]
  if not failed:
    return summary[:max_chars]
  note = len(_more(len(failed) - 1)) + 2 if len(failed) > 1 else 0
  first_budget = max(0, max_chars - len(summary) - 2 - note)
  parts = [summary, describe_failure(*failed[0], first_budget, prefix_lines=prefix_lines)]
  for shown, (test, run) in enumerate(failed[1:MAX_FAILURES_SHOWN], start=2):
    extra = [describe_failure(test, run, prefix_lines=prefix_lines)]
    if shown < len(failed):
      extra.append(_more(len(failed) - shown))
    if len("\n\n".join(parts + extra)) > max_chars:
      break
    parts.append(extra[0])
  if len(parts) - 1 < len(failed):
    parts.append(_more(len(failed) - len(parts) + 1))
  return "\n\n".join(parts)[:max_chars]
