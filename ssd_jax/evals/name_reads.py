"""Which names a piece of Python reads from the scope around it, found by scope, not by spelling.

`n` read inside `def f(n)` is the parameter, not the module's `n`; a comprehension's loop variable is its own,
but its first iterable and a walrus in it belong to the scope around it. Where unsure (a method reading a name
its class binds) a read is counted: callers use these sets to keep what a solution may read.
"""

from __future__ import annotations

import ast

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


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
  its first iterable is read outside it and a walrus in it binds outside it; a class's methods are functions
  (a method cannot see the class's names, so a read of one counts as the module's: a read too many).
  """
  if isinstance(node, _FUNCTIONS):
    a = node.args
    params = _parameters(node)
    outside = [*getattr(node, "decorator_list", ()), *a.defaults, *(d for d in a.kw_defaults if d is not None)]
    outside += [p.annotation for p in params if p.annotation] + [getattr(node, "returns", None)]
    reads, bound, shared = _scope_reads(node.body if isinstance(node.body, list) else [node.body])
    inner = reads - ((bound | {p.arg for p in params}) - shared)
    return inner.union(*(free_reads(e) for e in outside if e is not None))
  if isinstance(node, _COMPREHENSIONS):
    first, *later = node.generators
    parts = [first.target, *first.ifs, *later, *(getattr(node, f) for f in ("elt", "key", "value") if hasattr(node, f))]
    reads, bound, _ = _scope_reads(parts)
    walrus = {n.target.id for n in ast.walk(node) if isinstance(n, ast.NamedExpr)}
    return (reads - (bound - walrus)) | walrus | free_reads(first.iter)
  if isinstance(node, ast.ClassDef):
    reads, _, _ = _scope_reads([*node.body, *node.decorator_list, *node.bases, *node.keywords])
    return reads
  return _scope_reads([node])[0]


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[ast.arg]:
  """A function's parameters, in order: positional, keyword-only, then `*args` and `**kwargs`."""
  a = node.args
  return [p for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if p is not None]


def parameter_names(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[str]:
  """The names of a function's parameters, in `_parameters`' order."""
  return [p.arg for p in _parameters(node)]


def own_bindings(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
  """The names a function binds in its own scope, its parameters included: not those its comprehensions or
  nested functions bind, nor those it declares global or nonlocal."""
  _, bound, shared = _scope_reads(node.body if isinstance(node.body, list) else [node.body])
  return (bound | set(parameter_names(node))) - shared


def root_name(node: ast.AST) -> str | None:
  """`a` of `a.b.c(...)[i]`: the name an attribute, call or subscript chain starts from."""
  while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
    node = node.func if isinstance(node, ast.Call) else node.value
  return node.id if isinstance(node, ast.Name) else None


def chain_roots(node: ast.AST) -> dict[int, str | None]:
  """{id(n): root_name(n)} for every attribute, call and subscript under `node`, each chain walked once (a chain
  of n calls costs n, not n^2)."""
  roots: dict[int, str | None] = {}
  for top in ast.walk(node):
    if not isinstance(top, (ast.Attribute, ast.Call, ast.Subscript)) or id(top) in roots:
      continue
    chain, n = [], top
    while isinstance(n, (ast.Attribute, ast.Call, ast.Subscript)) and id(n) not in roots:
      chain.append(n)
      n = n.func if isinstance(n, ast.Call) else n.value
    found = roots[id(n)] if id(n) in roots else n.id if isinstance(n, ast.Name) else None
    for link in chain:
      roots[id(link)] = found
  return roots
