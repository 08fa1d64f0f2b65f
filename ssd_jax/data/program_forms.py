"""A program's form without the spelling of its names: two programs equal here compute alike.

Used wherever "the same program" must not depend on what a function or its variables are called: the
diversity of correct samples (`evals.correct_diversity`), the built-in task's splits (`tasks.builtin`) and the
check that training problems are not evaluation problems (`pipeline.problems.shared_problems`).
"""

from __future__ import annotations

import ast


class _BoundNames(ast.NodeVisitor):
  """Collects the names a program binds itself (variables, parameters, functions, classes, imports,
  `except ... as` names, `global`/`nonlocal` declarations, `match` captures), apart from them the
  parameter names, which keyword arguments may repeat, and the attributes it gives its own objects
  (assigned as `obj.attr = ...`, or bound in a class body: methods, class variables)."""

  def __init__(self):
    self.names: set[str] = set()
    self.parameters: set[str] = set()
    self.attributes: set[str] = set()

  def visit_Name(self, node):
    if isinstance(node.ctx, (ast.Store, ast.Del)):
      self.names.add(node.id)

  def visit_Attribute(self, node):
    if isinstance(node.ctx, (ast.Store, ast.Del)):
      self.attributes.add(node.attr)
    self.generic_visit(node)

  def visit_ClassDef(self, node):
    for statement in node.body:
      if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        self.attributes.add(statement.name)
      elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        self.attributes.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    self._visit_definition(node)

  def visit_arg(self, node):
    self.names.add(node.arg)
    self.parameters.add(node.arg)

  def visit_ExceptHandler(self, node):
    if node.name:
      self.names.add(node.name)
    self.generic_visit(node)

  def _visit_declaration(self, node):
    self.names.update(node.names)

  visit_Global = visit_Nonlocal = _visit_declaration

  def _visit_capture(self, node):
    if node.name:
      self.names.add(node.name)
    self.generic_visit(node)

  visit_MatchAs = visit_MatchStar = _visit_capture

  def visit_MatchMapping(self, node):
    if node.rest:
      self.names.add(node.rest)
    self.generic_visit(node)

  def _visit_definition(self, node):
    self.names.add(node.name)
    self.generic_visit(node)

  visit_FunctionDef = visit_AsyncFunctionDef = _visit_definition

  def visit_alias(self, node):
    self.names.add((node.asname or node.name).split(".")[0])


class _Canonicalize(ast.NodeTransformer):
  """Renames bound names and own attributes to placeholders in order of first use; drops docstrings and
  annotations."""

  def __init__(self, bound: set[str], parameters: set[str], attributes: set[str]):
    self.bound = bound
    self.parameters = parameters
    self.attributes = attributes
    self.mapping: dict[str, str] = {}

  def _placeholder(self, name: str) -> str:
    return self.mapping.setdefault(name, f"_v{len(self.mapping)}")

  def _rename(self, name: str) -> str:
    if name not in self.bound:
      return name  # builtins and library names carry meaning
    return self._placeholder(name)

  def visit_Name(self, node):
    node.id = self._rename(node.id)
    return node

  def visit_Attribute(self, node):
    # `self.memo` and `self.dfs(...)` name the program's own state and methods; `xs.append` keeps its name
    # unless the program gives some object an attribute called `append`.
    if node.attr in self.attributes:
      node.attr = self._placeholder(node.attr)
    self.generic_visit(node)
    return node

  def visit_arg(self, node):
    node.arg = self._rename(node.arg)
    node.annotation = None
    return node

  def visit_alias(self, node):
    node.asname = self._rename((node.asname or node.name).split(".")[0])
    return node

  def visit_keyword(self, node):
    # `f(x=1)` names a parameter of f: keywords that spell one of the program's own parameters are renamed
    # (`key=` of `sorted` keeps its name unless the program also has a parameter called `key`).
    if node.arg in self.parameters:
      node.arg = self._rename(node.arg)
    self.generic_visit(node)
    return node

  def visit_AnnAssign(self, node):
    """`x: int = v` is `x = v`; a bare declaration `x: int` does nothing and is dropped."""
    if node.value is None:
      return None
    return self.visit(ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno))

  def visit_ExceptHandler(self, node):
    if node.name:
      node.name = self._rename(node.name)
    self.generic_visit(node)
    return node

  def _visit_declaration(self, node):
    node.names = [self._rename(name) for name in node.names]
    return node

  visit_Global = visit_Nonlocal = _visit_declaration

  def _visit_capture(self, node):
    if node.name:
      node.name = self._rename(node.name)
    self.generic_visit(node)
    return node

  visit_MatchAs = visit_MatchStar = _visit_capture

  def visit_MatchMapping(self, node):
    if node.rest:
      node.rest = self._rename(node.rest)
    self.generic_visit(node)
    return node

  def _visit_definition(self, node):
    node.name = self._rename(node.name)
    body = node.body
    if (
      body
      and isinstance(body[0], ast.Expr)
      and isinstance(body[0].value, ast.Constant)
      and isinstance(body[0].value.value, str)
    ):
      node.body = body[1:] or [ast.Pass()]
    if hasattr(node, "returns"):
      node.returns = None
    self.generic_visit(node)
    return node

  visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_definition


def normalize_program(code: str) -> str:
  """A canonical form of a program: its AST without comments, docstrings, annotations,
  or the spelling of the names it binds and of the attributes it gives its own objects
  (renamed in order of first appearance, so two programs that differ only in names
  normalise alike). Code that does not parse is kept as its whitespace-collapsed text."""
  try:
    tree = ast.parse(code)
  except (SyntaxError, ValueError):
    return " ".join(code.split())
  finder = _BoundNames()
  finder.visit(tree)
  tree = _Canonicalize(finder.names, finder.parameters, finder.attributes).visit(tree)
  if (
    tree.body
    and isinstance(tree.body[0], ast.Expr)
    and isinstance(tree.body[0].value, ast.Constant)
    and isinstance(tree.body[0].value.value, str)
  ):
    tree.body = tree.body[1:]
  return ast.dump(tree, annotate_fields=False, include_attributes=False)
