"""What of a program is a usage example rather than its solution, so two solutions compare by their definitions.

A program graded through its definitions often ends with a usage example: `print(f(3))`, an assert, an
`if __name__ == "__main__":` block, and the assignments that feed them (`n = 3`, `result = f(n)`,
`print(result)`). Those are left out of the solution's form (`correct_diversity.solution_form`); nothing the
solution's own code reads is.

An assignment counts as usage only when all of these hold: it binds plain names, its value is literal data
or a call of a function or class the program defines (a call of anything else may be a side effect the
solution depends on), usage already left out reads one of its names as data (a name usage *calls* may be the
function under test, `total = pick(loop)`), nothing kept reads any of them, and no `global` statement names
them. Reads are found by scope (a function's parameters and locals are not the module's names) and are
over-approximated where unsure, which can only keep an assignment, never drop one a solution reads.
"""

from __future__ import annotations

import ast
import collections

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def is_main_guard(node: ast.stmt) -> bool:
  """Whether `node` is `if __name__ == "__main__":`."""
  test = node.test if isinstance(node, ast.If) else None
  return (
    isinstance(test, ast.Compare)
    and isinstance(test.left, ast.Name)
    and test.left.id == "__name__"
    and [type(o) for o in test.ops] == [ast.Eq]
    and isinstance(test.comparators[0], ast.Constant)
    and test.comparators[0].value == "__main__"
  )


def _scope_reads(roots: list[ast.AST]) -> tuple[set[str], set[str], set[str]]:
  """(names read, names bound, names declared global or nonlocal) in one scope, nested scopes adding their
  free reads."""
  reads, bound, shared = set(), set(), set()
  stack = list(roots)
  while stack:
    node = stack.pop()
    if isinstance(node, (*_FUNCTIONS, *_COMPREHENSIONS, ast.ClassDef)):
      reads |= free_reads(node)
      if not isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
        bound.add(node.name)
      continue
    if isinstance(node, ast.Name):
      (reads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
    elif isinstance(node, (ast.Global, ast.Nonlocal)):
      shared.update(node.names)
    elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
      reads.add(node.target.id)  # `x += 1` reads x first
    stack.extend(ast.iter_child_nodes(node))
  return reads, bound, shared


def free_reads(node: ast.AST) -> set[str]:
  """The names `node` reads from the scope around it.

  A function's parameters and the names it binds are its own (unless declared global or nonlocal), but its
  decorators, defaults and annotations are read outside it; a comprehension's loop variables are its own, but
  its first iterable is read outside it. A class body's reads all count (a method cannot see the class's
  names, so this may count a read too many).
  """
  if isinstance(node, _FUNCTIONS):
    a = node.args
    params = [
      *a.posonlyargs,
      *a.args,
      *a.kwonlyargs,
      *([a.vararg] if a.vararg else []),
      *([a.kwarg] if a.kwarg else []),
    ]
    outside = [*getattr(node, "decorator_list", ()), *a.defaults, *(d for d in a.kw_defaults if d is not None)]
    outside += [p.annotation for p in params if p.annotation] + [getattr(node, "returns", None)]
    reads, bound, shared = _scope_reads(node.body if isinstance(node.body, list) else [node.body])
    inner = reads - ((bound | {p.arg for p in params}) - shared)
    return inner.union(*(free_reads(e) for e in outside if e is not None))
  if isinstance(node, _COMPREHENSIONS):
    first, *later = node.generators
    parts = [first.target, *first.ifs, *later, *(getattr(node, f) for f in ("elt", "key", "value") if hasattr(node, f))]
    reads, bound, _ = _scope_reads(parts)
    return (reads - bound) | free_reads(first.iter)
  if isinstance(node, ast.ClassDef):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
  return _scope_reads([node])[0]


def _called(node: ast.AST) -> set[str]:
  """Names `node` calls directly (`f(...)`)."""
  return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _usage_binding(node: ast.stmt, defined: set[str]) -> set[str]:
  """The names an assignment binds if it may be usage (plain names; literal data or a call of what the
  program defines; no walrus binding more), else the empty set."""
  if isinstance(node, ast.Assign):
    targets = node.targets
  elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
    targets = [node.target]
  else:
    return set()
  stored = [n for t in targets for n in ast.walk(t) if isinstance(n, (ast.Attribute, ast.Subscript, ast.Name))]
  if not stored or any(not isinstance(n, ast.Name) for n in stored):
    return set()
  if any(isinstance(n, ast.NamedExpr) for n in ast.walk(node.value)):
    return set()
  callee = node.value.func if isinstance(node.value, ast.Call) else None
  while isinstance(callee, (ast.Attribute, ast.Call)):
    callee = callee.value if isinstance(callee, ast.Attribute) else callee.func
  if not (isinstance(callee, ast.Name) and callee.id in defined):
    try:
      ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
      return set()
  return {n.id for n in stored}


def solution_statements(body: list[ast.stmt]) -> list[ast.stmt]:
  """The top-level statements of `body` that are not usage (see the module docstring), in order.

  Args:
    body: a parsed program's top-level statements (of a program that does not read standard input).
  """
  is_usage = [isinstance(s, (ast.Expr, ast.Assert)) or is_main_guard(s) for s in body]
  kept = [s for s, usage in zip(body, is_usage, strict=True) if not usage]
  usage_reads = set().union(*(free_reads(s) for s, usage in zip(body, is_usage, strict=True) if usage))
  usage_calls = set().union(*(_called(s) for s, usage in zip(body, is_usage, strict=True) if usage))
  defined = {s.name for s in kept if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
  declared_global = {
    name for n in ast.walk(ast.Module(body=kept, type_ignores=[])) if isinstance(n, ast.Global) for name in n.names
  }
  reads = [free_reads(s) for s in kept]
  readers = collections.Counter(name for r in reads for name in r)
  dropped: set[int] = set()
  changed = True
  while changed:  # Latest first: a usage chain is usually read after it is built, so one pass drops it.
    changed = False
    for i in reversed(range(len(kept))):
      names = set() if i in dropped else _usage_binding(kept[i], defined)
      if not names or names & declared_global or names & usage_calls or not names & usage_reads:
        continue
      if any(readers[name] - (name in reads[i]) for name in names):
        continue
      dropped.add(i)
      changed = True
      readers.subtract(reads[i])
      usage_reads |= reads[i]
      usage_calls |= _called(kept[i])
  return [s for i, s in enumerate(kept) if i not in dropped]
