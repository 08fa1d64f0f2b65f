"""From a model's completion to the program that runs in the sandbox."""

from __future__ import annotations

import ast
import re

from ssd_jax.data.problems import Problem

# An opening fence (``` or ~~~, optional info string) through the matching closing fence, whose line may end
# in CRLF (`$` matches before the "\n" only).
_FENCE = re.compile(
  r"^(?P<indent>[ \t]*)(?P<fence>```|~~~)(?P<info>[^\n]*)\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*\r?$",
  re.MULTILINE | re.DOTALL,
)
# An opening fence with no closing fence: the completion was cut off mid-block.
_UNCLOSED_FENCE = re.compile(
  r"^(?P<indent>[ \t]*)(?:```|~~~)(?P<info>[^\n]*)\n(?P<body>.*)\Z", re.MULTILINE | re.DOTALL
)
# Info strings of blocks that may hold the answer; other tags (bash, text, output, ...) name another language.
_PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3"})
# A `from __future__ import` statement at the top level, parenthesized names included.
_FUTURE_IMPORT = re.compile(r"^from[ \t]+__future__[ \t]+import[ \t]+(?:\([^)]*\))?[^\n]*(?:\n|\Z)", re.MULTILINE)


def extract_code(completion: str) -> str:
  """Returns the code to grade in a completion.

  The candidates are the fenced blocks tagged Python (``python``, ``py``, ``python3``, ``py3``) or
  untagged; a block tagged with another language (``bash``, ``text``, ``output``, ...) is no candidate
  unless no block is. Of the candidates, the last complete block wins (LiveCodeBench's rule). A block
  left open at the end (generation stopped mid-block) is taken only when no candidate is complete, so a
  cut-off usage example after the solution does not replace it. Without a fence the completion itself
  is the code.

  Thinking-model output up to the last ``</think>`` is ignored; a ``<think>`` section opened after it (or at
  the start) and never closed (cut off at the token limit) yields no code, '' (graded as failing), as its
  drafts are no answer. A ``<think>`` inside the text (code that handles the tag) is text like any other.
  """
  text = completion.rsplit("</think>", 1)[-1]
  if text.lstrip().startswith("<think>"):
    return ""
  blocks = [(m, True) for m in _FENCE.finditer(text)]
  unclosed = _UNCLOSED_FENCE.search(text[_last_fence_end(text) :])
  if unclosed is not None:
    blocks.append((unclosed, False))
  if not blocks:
    return text
  candidates = [b for b in blocks if _tag(b[0]) in _PYTHON_TAGS] or blocks
  complete = [m for m, closed in candidates if closed]
  return _block_code(complete[-1] if complete else candidates[-1][0])


def _tag(match: re.Match[str]) -> str:
  """The language an opening fence names: the info string's first word, lowercased ('' when untagged)."""
  words = match.group("info").split()
  return words[0].lower() if words else ""


def _block_code(match: re.Match[str]) -> str:
  """A block's body less the opening fence's indentation (a block inside a list item), as Markdown reads it.

  Only up to that indentation goes, so a block of a function body (to follow a starter) keeps its own.
  """
  return re.sub(rf"^[ \t]{{0,{len(match.group('indent'))}}}", "", match.group("body"), flags=re.MULTILINE)


def _last_fence_end(text: str) -> int:
  end = 0
  for match in _FENCE.finditer(text):
    end = match.end()
  return end


def _defines_top_level(code: str, name: str) -> bool:
  try:
    tree = ast.parse(code)
  except SyntaxError:
    return False
  return any(
    isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name for node in tree.body
  )


def _parses(code: str) -> bool:
  try:
    ast.parse(code)
  except SyntaxError:
    return False
  return True


def assemble_program(problem: Problem, code: str) -> str:
  """Builds the program to run from extracted code.

  - Code that defines the entry point (or ``class Solution``) is a full answer: the
    starter code goes first when it is valid on its own (it may carry imports and
    helpers, as HumanEval prompts do), then the answer, whose definitions win.
  - Other code under a starter is a continuation of the starter (a function body). When
    the code brings its own indentation, a whitespace-only last line of the starter (the
    cursor inside the body) is dropped, so that indentation is not doubled.
  - Without a starter, the code is the whole program.

  The problem's `program_prefix` (LiveCodeBench's imports) comes before all of it, and the answer's
  ``from __future__`` imports before that, as Python requires.
  """
  futures, code = _split_future_imports(code)
  return futures + problem.program_prefix + _with_starter(problem, code)


def _with_starter(problem: Problem, code: str) -> str:
  starter = problem.starter_code
  if not starter:
    return code
  names = [n for n in (problem.entry_point, "Solution") if n]
  if any(_defines_top_level(code, name) for name in names):
    return f"{starter.rstrip()}\n\n\n{code}" if _parses(starter) else code
  last_line = starter.rsplit("\n", 1)[-1]
  if last_line and not last_line.strip() and code[:1] in (" ", "\t"):
    starter = starter[: -len(last_line)]
  return starter + code


def _split_future_imports(code: str) -> tuple[str, str]:
  """Splits code into its top-level ``from __future__`` import lines and the rest."""
  futures = "".join(m.group(0) for m in _FUTURE_IMPORT.finditer(code))
  if futures and not futures.endswith("\n"):  # the code ended on a future import
    futures += "\n"
  return futures, _FUTURE_IMPORT.sub("", code)
