"""The global names a piece of test code reads and never binds itself: what it needs from the program.

Standard library only, and no `from __future__` import: this source is also prepended to the sandbox's
trusted checker, which runs as ``python -c`` without the package.
"""

import ast
import builtins

# Names every program can read without binding them.
BUILTIN_NAMES = frozenset(dir(builtins))


def names_read_not_bound(tree: ast.AST) -> list[str]:
  """Sorted global names `tree` reads and never binds (assigns, defines, imports, takes as an argument)."""
  read, bound = set(), set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Name):
      (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      bound.add(node.name)
    elif isinstance(node, ast.arg):
      bound.add(node.arg)
    elif isinstance(node, ast.alias):
      bound.add((node.asname or node.name).split(".")[0])
  return sorted(read - bound)
