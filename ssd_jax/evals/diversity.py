"""Diversity of the samples drawn for one problem: distinct programs and distinct behaviours."""

from __future__ import annotations

import ast
from collections.abc import Hashable, Sequence

from ssd_jax.evals.verdicts import TestRun, normalize_output


class _BoundNames(ast.NodeVisitor):
  """Collects the names a program binds itself (variables, parameters, functions, classes, imports)."""

  def __init__(self):
    self.names: set[str] = set()

  def visit_Name(self, node):
    if isinstance(node.ctx, (ast.Store, ast.Del)):
      self.names.add(node.id)

  def visit_arg(self, node):
    self.names.add(node.arg)

  def _visit_definition(self, node):
    self.names.add(node.name)
    self.generic_visit(node)

  visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_definition

  def visit_alias(self, node):
    self.names.add((node.asname or node.name).split(".")[0])


class _Canonicalize(ast.NodeTransformer):
  """Renames bound names to placeholders in order of first use and drops docstrings."""

  def __init__(self, bound: set[str]):
    self.bound = bound
    self.mapping: dict[str, str] = {}

  def _rename(self, name: str) -> str:
    if name not in self.bound:
      return name  # builtins and library names carry meaning
    return self.mapping.setdefault(name, f"_v{len(self.mapping)}")

  def visit_Name(self, node):
    node.id = self._rename(node.id)
    return node

  def visit_arg(self, node):
    node.arg = self._rename(node.arg)
    node.annotation = None
    return node

  def visit_alias(self, node):
    node.asname = self._rename((node.asname or node.name).split(".")[0])
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
  or the spelling of the names it binds. Code that does not parse is kept as its
  whitespace-collapsed text."""
  try:
    tree = ast.parse(code)
  except (SyntaxError, ValueError):
    return " ".join(code.split())
  finder = _BoundNames()
  finder.visit(tree)
  tree = _Canonicalize(finder.names).visit(tree)
  if (
    tree.body
    and isinstance(tree.body[0], ast.Expr)
    and isinstance(tree.body[0].value, ast.Constant)
    and isinstance(tree.body[0].value.value, str)
  ):
    tree.body = tree.body[1:]
  return ast.dump(tree, annotate_fields=False, include_attributes=False)


def count_distinct_programs(codes: Sequence[str]) -> int:
  """Number of distinct programs after ``normalize_program``."""
  return len({normalize_program(code) for code in codes})


def _outcome(run: TestRun) -> tuple[Hashable, ...]:
  output = tuple(map(tuple, normalize_output(run.stdout)))
  if run.passed:
    return (run.verdict.value, output)
  lines = run.message.strip().splitlines()
  return (run.verdict.value, output, lines[-1] if lines else "")  # e.g. the exception raised


def behaviour_signature(runs: Sequence[TestRun]) -> tuple[Hashable, ...]:
  """What a program did on each test: the verdict, the whitespace-normalised output, and
  for failures the last line of the message (the exception or the mismatch)."""
  return tuple(_outcome(run) for run in runs)


def count_distinct_behaviours(runs_per_sample: Sequence[Sequence[TestRun]]) -> int:
  """Number of distinct behaviour signatures among the samples of one problem."""
  return len({behaviour_signature(runs) for runs in runs_per_sample})
