"""Answers in more than one piece: the code among a completion's prose, and the definitions an answer takes from
the code before it (a helper written in an earlier block)."""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Collection, Sequence

from ssd_jax.data.code_names import BUILTIN_NAMES, names_read_not_bound

# What `ast.parse` raises on text it cannot read; deep nesting (a degenerate run of "-") overflows its parser's
# stack as a MemoryError or RecursionError, and a null byte was a ValueError before Python 3.12.
UNPARSABLE = (SyntaxError, ValueError, MemoryError, RecursionError)
# A line that starts code in unfenced prose: a top-level definition, import or decorator.
_CODE_START = re.compile(r"(?:(?:async[ \t]+)?def|class)[ \t]+\w|import[ \t]+\w|from[ \t]+[\w.]+[ \t]+import\b|@\w")
# What a carried constant's value may be built from: literals, containers, operators, names and attributes
# (``MOD = 10**9 + 7``, ``LIMIT = 2 * N``, ``INF = math.inf``), and calls of builtins that only build a value
# (``INF = float("inf")``, ``SQUARES = [i * i for i in range(10)]``), so carrying it runs no code of the
# completion's and reads no input.
_CONSTANT_NODES = (
  ast.Constant,
  ast.Tuple,
  ast.List,
  ast.Set,
  ast.Dict,
  ast.UnaryOp,
  ast.BinOp,
  ast.BoolOp,
  ast.Compare,
  ast.IfExp,
  ast.Name,
  ast.Attribute,
  ast.Subscript,
  ast.Slice,
  ast.Starred,
  ast.ListComp,
  ast.SetComp,
  ast.DictComp,
  ast.GeneratorExp,
  ast.comprehension,
  ast.Call,
  ast.keyword,
  ast.expr_context,
  ast.unaryop,
  ast.operator,
  ast.boolop,
  ast.cmpop,
)
# Names through which a program reads standard input (`input()`, `sys.stdin`, `from sys import stdin`, `fileinput`).
_STDIN_NAMES = frozenset({"input", "stdin", "fileinput"})
_VALUE_BUILDERS = frozenset(
  {"int", "float", "complex", "str", "bytes", "bool", "tuple", "list", "set", "frozenset", "dict", "range", "pow"}
  | {"abs", "min", "max", "sum", "len", "sorted", "reversed", "enumerate", "zip", "chr", "ord"}
)


def _builds_a_value(value: ast.expr) -> bool:
  """Whether evaluating `value` runs nothing of the completion's and reads no input.

  Only builtins that build a value may be called (see `_CONSTANT_NODES`), none of them handed a function
  (``sorted(x, key=helper)``), and no dunder attribute or input (``list(sys.stdin)``) may be read.
  """
  for node in ast.walk(value):
    if not isinstance(node, _CONSTANT_NODES):
      return False
    if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _VALUE_BUILDERS):
      return False
    if isinstance(node, ast.keyword) and isinstance(node.value, (ast.Name, ast.Attribute)):
      return False
    if isinstance(node, ast.Attribute) and node.attr.startswith("__"):  # `sys.__dict__`, `x.__class__`: no value.
      return False
  return not reads_stdin(value)


def reads_stdin(tree: ast.AST) -> bool:
  """Whether a program reads standard input (`input`, `sys.stdin`, `from sys import stdin`, `fileinput`, `open(0)`)."""
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


def code_spans(text: str) -> list[str]:
  """The code among prose: from each line that starts a top-level definition, import or decorator (and is not
  in a span already), the most lines that parse, ending before a line at column 0 (prose) or at the end."""
  # Where each line starts, as Python counts lines (SyntaxError.lineno), and where the text ends.
  offsets = [0, *(m.end() for m in re.finditer("\n", text))]
  if offsets[-1] < len(text):
    offsets.append(len(text))
  lines = len(offsets) - 1
  ends = [i for i in range(lines) if text[offsets[i] : offsets[i] + 1].strip()] + [lines]
  spans, start = [], 0
  while start < lines:
    end = _longest_parse(text, offsets, start, ends) if _CODE_START.match(text, offsets[start]) else None
    if end is None:
      start += 1
    else:
      spans.append(text[offsets[start] : offsets[end]].rstrip() + "\n")
      start = end
  return spans


def _longest_parse(text: str, offsets: list[int], start: int, ends: list[int]) -> int | None:
  """The last of `ends` (line numbers) up to which the lines of `text` from `start` parse, if any.

  Lines that fail to parse fail with any end past the line of the error (a span that parses ends before the
  statement it fails on), so the search skips to the ends before it: a few parses, not one per end. `start`
  is one of `ends` (a line at column 0), where the search stops.
  """
  limit = len(offsets) - 1
  while (end := ends[bisect.bisect_right(ends, limit) - 1]) > start:
    try:
      ast.parse(text[offsets[start] : offsets[end]])
      return end
    except SyntaxError as error:
      limit = min(end - 1, start + error.lineno - 1) if error.lineno else end - 1
    except UNPARSABLE:
      limit = end - 1
  return None


def with_earlier_definitions(code: str, earlier: Sequence[str], keep_out: Collection[str] = ()) -> str:
  """`code` after the top-level definitions of `earlier` it reads and does not bind itself.

  Carried are function and class definitions, imports (not ``*``) and assignments of constants, each
  the last one of its name, with what they read in turn, in their original order. Nothing else is carried: a
  usage example, test, ``print`` or ``if __name__`` block before the answer does not run.

  Args:
    code: the answer; parses.
    earlier: code before the answer, each piece parsing on its own.
    keep_out: names never carried: the entry point, and what the starter or the grader's prefix defines, so
      that a restated helper does not replace the problem's own.

  Returns:
    `code`, after the carried definitions when there are any.
  """
  last = {}  # name -> (piece, statement) of its last carriable definition
  statements = {}
  for i, source in enumerate(earlier):
    for j, node in enumerate(ast.parse(source).body):
      statements[i, j] = (source, node)
      for name in definition_names(node):
        if name not in keep_out and name not in BUILTIN_NAMES:
          last[name] = (i, j)
  carried = set()
  wanted = names_read_not_bound(ast.parse(code))
  while wanted:
    key = last.get(wanted.pop())
    if key is not None and key not in carried:
      carried.add(key)
      wanted.extend(names_read_not_bound(statements[key][1]))
  # A constant runs where it is carried, before the answer: one reading a name nothing before it binds (a value
  # the usage code read from input, a function the answer defines) would fail the whole program there, and one
  # reading standard input under another name (`from sys import stdin as s`) would take the tests' input.
  kept, bound = [], BUILTIN_NAMES | (set(keep_out) - top_level_names(code))
  for key in sorted(carried):
    node = statements[key][1]
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and not bound.issuperset(names_read_not_bound(node)):
      continue
    kept.append(key)
    bound |= set(definition_names(node)) - _input_aliases(node)
  if not kept:
    return code
  return "\n\n".join(statement_source(*statements[key]) for key in kept) + "\n\n\n" + code


def _input_aliases(node: ast.stmt) -> set[str]:
  """The names an import binds to standard input (`from sys import stdin as s`, `import fileinput as f`)."""
  if isinstance(node, ast.ImportFrom):
    return {a.asname or a.name for a in node.names if a.name in _STDIN_NAMES}
  if isinstance(node, ast.Import):
    return {(a.asname or a.name).split(".")[0] for a in node.names if a.name == "fileinput"}
  return set()


def definition_names(node: ast.stmt) -> list[str]:
  """The names a carriable statement binds; [] for any other statement."""
  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
    return [node.name]
  if isinstance(node, (ast.Import, ast.ImportFrom)):
    return [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
  if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = [n for t in targets for n in (t.elts if isinstance(t, ast.Tuple) else [t])]
    if _builds_a_value(node.value) and all(isinstance(n, ast.Name) for n in names):
      return [n.id for n in names]
  return []


def statement_source(source: str, node: ast.stmt) -> str:
  """The statement as written, decorators included; alone, even where ``;`` joins it to another."""
  decorators = getattr(node, "decorator_list", [])
  return "".join(f"@{ast.get_source_segment(source, d)}\n" for d in decorators) + ast.get_source_segment(source, node)


def top_level_names(source: str) -> set[str]:
  """The names `source` binds at its top level (definitions, imports but ``*``, assignments); none when it does
  not parse."""
  try:
    tree = ast.parse(source)
  except SyntaxError:
    return set()
  names = set()
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
      names.update(definition_names(node))
    else:
      names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
  return names
