"""The SSD degeneracy filter: drop only empty outputs and one-line stubs.

Simple self-distillation trains on unverified samples; the only outputs it drops are
those with nothing to learn from. A completion is degenerate when

  * 'empty': it is empty or only whitespace;
  * 'empty_code': its code (the fenced blocks, or the whole text when there is no fence)
    has no line other than blanks and comments, and no prose surrounds the fences;
  * 'one_line_stub': its code is a single line that is a placeholder: `pass`, `...`,
    a bare `return`, `raise NotImplementedError`, or a bare `def`/`class` header
    (optionally followed by `pass` or `...` on the same line).

Anything else is kept, including one-line programs that do work, wrong programs and prose.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

from ssd_jax.data.sample_record import SampleRecord

EMPTY = "empty"
EMPTY_CODE = "empty_code"
ONE_LINE_STUB = "one_line_stub"
KEPT = "kept"

# A fenced block runs to its closing fence, or to the end of a truncated completion.
_FENCE_RE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_FENCE_MARK_RE = re.compile(r"```[^\n]*")  # a fence left after the blocks are removed (opened on the last line)
_STUB_RES = tuple(
  re.compile(p)
  for p in (
    r"pass",
    r"\.\.\.",
    r"return(\s+None)?",
    r"raise\s+NotImplementedError(\(.*\))?",
    r"(async\s+)?def\s+\w+\s*\(.*\)\s*(->.*)?:\s*(pass|\.\.\.)?",
    r"class\s+\w+\s*(\(.*\))?\s*:\s*(pass|\.\.\.)?",
  )
)


def code_lines(completion_text: str) -> list[str]:
  """The completion's meaningful code lines (stripped; blanks and comments dropped).

  The code is the concatenation of the fenced blocks when there is a fence, else the
  whole text.
  """
  blocks = _FENCE_RE.findall(completion_text)
  code = "\n".join(blocks) if "```" in completion_text else completion_text
  lines = (line.strip() for line in code.splitlines())
  return [line for line in lines if line and not line.startswith("#")]


def is_degenerate(completion_text: str) -> str | None:
  """Returns why a completion is degenerate ('empty', 'empty_code', 'one_line_stub'), or None."""
  if not completion_text.strip():
    return EMPTY
  lines = code_lines(completion_text)
  if not lines:
    # Reasoning before an empty or cut-off fence is an output the paper keeps; only bare fences are empty.
    prose = _FENCE_MARK_RE.sub("", _FENCE_RE.sub("", completion_text))
    return None if prose.strip() else EMPTY_CODE
  if len(lines) == 1 and any(p.fullmatch(lines[0]) for p in _STUB_RES):
    return ONE_LINE_STUB
  return None


def filter_degenerate(
  records: Iterable[SampleRecord],
) -> tuple[list[SampleRecord], collections.Counter[str]]:
  """Keeps the non-degenerate records.

  Returns:
    (kept records in input order, counts per reason plus 'kept').
  """
  kept, counts = [], collections.Counter()
  for record in records:
    reason = is_degenerate(record.completion_text)
    counts[reason or KEPT] += 1
    if reason is None:
      kept.append(record)
  return kept, counts
