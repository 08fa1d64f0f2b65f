"""From a model's completion to the program that runs in the sandbox."""

from __future__ import annotations

import ast
import re
import textwrap

from ssd_jax.data.code_names import names_read_not_bound
from ssd_jax.data.problems import Problem
from ssd_jax.evals.code_context import (
  UNPARSABLE,
  code_spans,
  definition_names,
  reads_stdin,
  statement_source,
  top_level_names,
  with_earlier_definitions,
)
from ssd_jax.evals.code_fences import Block, fenced_blocks

# Info strings of blocks that may hold the answer; other tags (bash, text, output, ...) name another language.
_PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3"})
# A `from __future__ import` statement at the top level, parenthesized names included.
_FUTURE_IMPORT = re.compile(r"^from[ \t]+__future__[ \t]+import[ \t]+(?:\([^)]*\))?[^\n]*(?:\n|\Z)", re.MULTILINE)
# The class line of a LiveCodeBench functional starter.
_SOLUTION_CLASS = re.compile(r"^class[ \t]+Solution\b[^\n]*", re.MULTILINE)


def extract_code(completion: str, problem: Problem | None = None) -> str:
  """Returns the code to grade in a completion.

  The candidates are the fenced blocks tagged Python (``python``, ``py``, ``python3``, ``py3``; the tag ends at
  whitespace, ``:`` or ``{``, as in ``python:solution.py``) or untagged; a block tagged with another language
  (``bash``, ``text``, ``output``, ...) is no candidate unless no block is. A fence is three or more backticks
  or tildes, closed by at least as many of the same (CommonMark): a block opened by four may hold lines of three.
  Such a fence at the end of a line of code (``return x`` then the fence) closes the block after that code,
  unless it stands in a string literal or a comment (see `fenced_blocks`).

  Given the problem, the last candidate that answers it wins: for a problem with an entry point, a block that
  defines the entry point or ``class Solution`` at its top level (read dedented); for a stdin problem, a block that
  parses and reads standard input (``input``, ``sys.stdin``, ``open(0)``, ``fileinput``). Complete blocks come
  first, then the one left open at the end. Instruct models often follow the solution with a usage example, a
  test or doctest block, sample input or output, or a complexity note, and how often differs between a base and
  a fine-tuned model; taking the last block would grade that formatting instead of the code, and the same
  extraction rewards on-policy rollouts. A candidate that does not parse is read on through the next closing
  fences (up to three) when that makes it answer: a fence line in a docstring's example closed it early.

  The answer comes after the top-level definitions it reads, does not make itself and takes from the candidates
  before it (a helper written in a block of its own): functions, classes, imports and literal constants, with
  what they read in turn, each as last written. Nothing that runs (a usage example, test, ``print``, ``if
  __name__`` block) is carried, nor the entry point, nor a name the starter or the grader's prefix defines.

  When no candidate answers (a body-only answer under a starter, prose, other languages), or without a problem,
  the last complete candidate wins (LiveCodeBench's rule). A block left open at the end (generation stopped
  mid-block) is then taken only when no candidate is complete, so a cut-off usage example after the solution
  does not replace it.

  Without a fence the completion is the code when it parses (read dedented, or after the starter as a body-only
  answer). Otherwise its code is read out of the prose: from each line that starts a top-level ``def``,
  ``class``, import or decorator, the most lines that parse; among these spans, as among blocks, the last that
  answers wins, with what it needs from those before it, else the longest; with none, the completion itself.

  Thinking-model output up to the last ``</think>`` is ignored; a ``<think>`` section opened after it (or at
  the start) and never closed (cut off at the token limit) yields no code, '' (graded as failing), as its
  drafts are no answer. A ``<think>`` inside the text (code that handles the tag) is text like any other.

  Args:
    completion: the model's raw completion.
    problem: the problem it answers; None for LiveCodeBench's rule alone.

  Returns:
    The code, dedented when a chosen block only parses that way, after the definitions it takes from the code
    before it; '' for unfinished thinking.
  """
  text = completion.rsplit("</think>", 1)[-1]
  if text.lstrip().startswith("<think>"):
    return ""
  blocks = fenced_blocks(text)
  if not blocks:
    return _unfenced_code(text, problem)
  candidates = [b for b in blocks if b.tag in _PYTHON_TAGS] or blocks
  complete = [b for b in candidates if b.closed]
  if problem is not None:
    cut_off = [b for b in candidates if not b.closed]
    for block in [*reversed(complete), *cut_off]:
      answer = _answer(_block_code(block), problem) or _extended_answer(block, problem)
      if answer is not None:
        earlier = [_block_code(b) for b in candidates if b.start < block.start]
        return _with_helpers(answer, earlier, problem)
  return _block_code(complete[-1] if complete else candidates[-1])


def _extended_answer(block: Block, problem: Problem) -> str | None:
  """The answer in a block that does not parse, read on through the next closing fences (see
  `Block.later_closings`): fence lines inside a string, such as a docstring's example, closed it early."""
  if _parse_dedented(_block_code(block))[0] is not None:
    return None
  for line_start in block.later_closings:
    answer = _answer(_dedent_by(block.text[block.body_start : line_start], block.indent), problem)
    if answer is not None:
      return answer
  return None


def _unfenced_code(text: str, problem: Problem | None) -> str:
  """The code in a completion without fences: all of it when it parses (read dedented, or after the starter as
  a body-only answer); else the last span of code (see `code_spans`) that answers the problem, with what it
  needs from the spans before it, or the longest span; the text itself when there is none."""
  if _parse_dedented(text)[0] is not None or (problem is not None and _parses(_with_starter(problem, text))):
    return text
  spans = code_spans(text)
  if problem is not None:
    for i in reversed(range(len(spans))):
      answer = _answer(spans[i], problem)
      if answer is not None:
        return _with_helpers(answer, spans[:i], problem)
  return max(spans, key=len, default=text)


def _with_helpers(answer: str, earlier: list[str], problem: Problem) -> str:
  """`answer` after the definitions it needs from the code before it (see `with_earlier_definitions`), leaving
  out the entry point and what the starter or the grader's prefix defines."""
  parsed = [code for tree, code in map(_parse_dedented, earlier) if tree is not None]
  keep_out = {problem.entry_point, "Solution"} | top_level_names(problem.starter_code)
  return with_earlier_definitions(answer, parsed, keep_out | top_level_names(problem.program_prefix))


def _answer(code: str, problem: Problem) -> str | None:
  """`code` when it answers `problem` (see `extract_code`), dedented if only that parses; None otherwise."""
  tree, code = _parse_dedented(code)
  if tree is None:
    return None
  if problem.entry_point:
    answers = bool(_top_level_definitions(tree) & {problem.entry_point, "Solution"})
  else:
    answers = reads_stdin(tree)
  return code if answers else None


def _parse_dedented(code: str) -> tuple[ast.Module | None, str]:
  """The syntax tree of `code` and the code it was read from: `code` itself, or dedented when only that parses."""
  for version in (code, textwrap.dedent(code)):
    try:
      return ast.parse(version), version
    except UNPARSABLE:
      continue
  return None, code


def _top_level_definitions(tree: ast.Module) -> set[str]:
  return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _block_code(block: Block) -> str:
  """A block's body less the opening fence's indentation (a block inside a list item), as Markdown reads it.

  Only up to that indentation goes, so a block of a function body (to follow a starter) keeps its own.
  """
  return _dedent_by(block.body, block.indent)


def _dedent_by(body: str, indent: str) -> str:
  return re.sub(rf"^[ \t]{{0,{len(indent)}}}", "", body, flags=re.MULTILINE)


def _defines_top_level(code: str, name: str) -> bool:
  try:
    tree = ast.parse(code)
  except UNPARSABLE:
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
    and _first_parameter(node) == "self"
    for node in tree.body
  )


def _split_method_answer(code: str) -> tuple[str, str]:
  """What of a method answer (see `_is_method_of`; parses) goes before the class line, and what goes in the class.

  Before it go the definitions its methods read as globals: helper functions and classes, imports and constants
  (see `definition_names`), each as written, every method (taking ``self`` or ``cls``, or static) left out. In the
  class goes the whole answer, as there a helper called by its bare name or an imported module is no global; but
  each of those constants built from no name the answer binds (a literal, a table) is bound there to the one before
  the class (``MOD = MOD``), not built again, so that top-level code filling it (a table, a memo) fills the one the
  methods read. One built from such names is built again there, from what the code before it made of them.
  """
  definitions, constants = [], []
  bound = top_level_names(code)
  for node in ast.parse(code).body:
    method = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
      _first_parameter(node) in ("self", "cls")
      or any(isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod") for d in node.decorator_list)
    )
    if definition_names(node) and not method:
      definitions.append(f"{statement_source(code, node)}\n\n\n")
      if isinstance(node, (ast.Assign, ast.AnnAssign)) and bound.isdisjoint(names_read_not_bound(node.value)):
        constants.append(node)
  # The parser counts columns in UTF-8 bytes and lines as Python reads them.
  source = code.encode()
  line_starts = [0, *(m.end() for m in re.finditer(rb"\r\n|\r|\n", source))]
  pieces, end = [], 0
  for node in constants:
    names = ", ".join(definition_names(node)).encode()
    pieces += [source[end : line_starts[node.lineno - 1] + node.col_offset], names + b" = " + names]
    end = line_starts[node.end_lineno - 1] + node.end_col_offset
  return "".join(definitions), b"".join([*pieces, source[end:]]).decode()


def _first_parameter(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
  """The name of a function's first positional parameter, if it has one."""
  names = [a.arg for a in node.args.posonlyargs + node.args.args]
  return names[0] if names else None


def _parses(code: str) -> bool:
  try:
    ast.parse(code)
  except UNPARSABLE:
    return False
  return True


def assemble_program(problem: Problem, code: str) -> str:
  """Builds the program to run from extracted code.

  - Under a ``class Solution`` starter, code that is the entry point method without its class (a function
    taking ``self``) goes under the starter's class line, indented as the starter's method, in place of the
    rest of the starter; its helpers, imports and constants go before the class line too, so its methods
    read them as globals (and still, inside the class, as attributes: the constants built from no name of
    the answer's as the same objects).
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
    definitions, class_body = _split_method_answer(textwrap.dedent(code))
    return f"{starter[: class_line.start()]}{definitions}{class_line.group()}\n{textwrap.indent(class_body, indent)}"
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
