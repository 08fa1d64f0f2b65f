"""From a model's completion to the program that runs in the sandbox."""

from __future__ import annotations

import ast
import re
import textwrap

from ssd_jax.data.problems import Problem

# An opening fence (``` or ~~~, optional info string) through the matching closing fence, whose line may end
# in CRLF (`$` matches before the "\n" only) or go on after a space ("``` That's it."), as LiveCodeBench, which
# takes any line holding ``` for a fence, reads it. Text right after the fence ("```python") never closes a block.
_FENCE = re.compile(
  r"^(?P<indent>[ \t]*)(?P<fence>```|~~~)(?P<info>[^\n]*)\n(?P<body>.*?)^[ \t]*(?P=fence)(?:[ \t][^\n]*)?\r?$",
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
# Names through which a program reads standard input (`input()`, `sys.stdin`, `from sys import stdin`, `fileinput`).
_STDIN_NAMES = frozenset({"input", "stdin", "fileinput"})
# The class line of a LiveCodeBench functional starter.
_SOLUTION_CLASS = re.compile(r"^class[ \t]+Solution\b[^\n]*", re.MULTILINE)


def extract_code(completion: str, problem: Problem | None = None) -> str:
  """Returns the code to grade in a completion.

  The candidates are the fenced blocks tagged Python (``python``, ``py``, ``python3``, ``py3``; the tag ends at
  whitespace, ``:`` or ``{``, as in ``python:solution.py``) or untagged; a block tagged with another language
  (``bash``, ``text``, ``output``, ...) is no candidate unless no block is. Without a fence the completion itself
  is the code.

  Given the problem, the last candidate that answers it wins: for a problem with an entry point, a block that
  defines the entry point or ``class Solution`` at its top level (read dedented); for a stdin problem, a block that
  parses and reads standard input (``input``, ``sys.stdin``, ``open(0)``, ``fileinput``). Complete blocks come
  first, then the one left open at the end. Instruct models often follow the solution with a usage example, a
  test or doctest block, sample input or output, or a complexity note, and how often differs between a base and
  a fine-tuned model; taking the last block would grade that formatting instead of the code, and the same
  extraction rewards on-policy rollouts.

  When no candidate answers (a body-only answer under a starter, prose, other languages), or without a problem,
  the last complete candidate wins (LiveCodeBench's rule). A block left open at the end (generation stopped
  mid-block) is then taken only when no candidate is complete, so a cut-off usage example after the solution
  does not replace it.

  Thinking-model output up to the last ``</think>`` is ignored; a ``<think>`` section opened after it (or at
  the start) and never closed (cut off at the token limit) yields no code, '' (graded as failing), as its
  drafts are no answer. A ``<think>`` inside the text (code that handles the tag) is text like any other.

  Args:
    completion: the model's raw completion.
    problem: the problem it answers; None for LiveCodeBench's rule alone.

  Returns:
    The code, dedented when a chosen block only parses that way; '' for unfinished thinking.
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
  if problem is not None:
    cut_off = [m for m, closed in candidates if not closed]
    for match in [*reversed(complete), *cut_off]:
      answer = _answer(_block_code(match), problem)
      if answer is not None:
        return answer
  return _block_code(complete[-1] if complete else candidates[-1][0])


def _answer(code: str, problem: Problem) -> str | None:
  """`code` when it answers `problem` (see `extract_code`), dedented if only that parses; None otherwise."""
  tree, code = _parse_dedented(code)
  if tree is None:
    return None
  if problem.entry_point:
    answers = bool(_top_level_definitions(tree) & {problem.entry_point, "Solution"})
  else:
    answers = _reads_stdin(tree)
  return code if answers else None


def _parse_dedented(code: str) -> tuple[ast.Module | None, str]:
  """The syntax tree of `code` and the code it was read from: `code` itself, or dedented when only that parses."""
  for version in (code, textwrap.dedent(code)):
    try:
      return ast.parse(version), version
    except SyntaxError:
      continue
  return None, code


def _top_level_definitions(tree: ast.Module) -> set[str]:
  return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _reads_stdin(tree: ast.Module) -> bool:
  for node in ast.walk(tree):
    if isinstance(node, ast.Name) and node.id in _STDIN_NAMES:
      return True
    if isinstance(node, ast.Attribute) and node.attr == "stdin":
      return True
    if (
      isinstance(node, ast.Call)
      and isinstance(node.func, ast.Name)
      and node.func.id == "open"
      and node.args
      and isinstance(node.args[0], ast.Constant)
      and type(node.args[0].value) is int
      and node.args[0].value == 0
    ):
      return True
  return False


def _tag(match: re.Match[str]) -> str:
  """The language an opening fence names: the info string's first word up to whitespace, ``:`` or ``{``,
  lowercased ('' when untagged)."""
  words = [w for w in re.split(r"[\s:{]+", match.group("info")) if w]
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
  return name in _top_level_definitions(tree)


def _is_method_of(code: str, entry_point: str) -> bool:
  """Whether `code` (read dedented) is a method answer: a top-level function `entry_point` taking ``self``, and no
  ``class Solution``."""
  tree, _ = _parse_dedented(code)
  if tree is None or not entry_point or "Solution" in _top_level_definitions(tree):
    return False
  return any(
    isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    and node.name == entry_point
    and [a.arg for a in node.args.posonlyargs + node.args.args][:1] == ["self"]
    for node in tree.body
  )


def _parses(code: str) -> bool:
  try:
    ast.parse(code)
  except SyntaxError:
    return False
  return True


def assemble_program(problem: Problem, code: str) -> str:
  """Builds the program to run from extracted code.

  - Under a ``class Solution`` starter, code that is the entry point method alone (a function taking
    ``self``) goes under the starter's class line, indented as the starter's method, in place of the
    rest of the starter.
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
  class_line = _SOLUTION_CLASS.search(starter)
  if class_line is not None and _is_method_of(code, problem.entry_point):
    # Indented as the starter's method line, which the answer replaces.
    body = re.search(r"^([ \t]+)\S", starter[class_line.end() :], re.MULTILINE)
    indent = body.group(1) if body else "    "
    return f"{starter[: class_line.end()]}\n{textwrap.indent(textwrap.dedent(code), indent)}"
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
