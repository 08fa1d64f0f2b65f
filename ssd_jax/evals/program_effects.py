"""What calling a program's own functions, classes and methods may change.

A function or method *writes module state* when it may change an object it does not bind (`object_links`
follows the names that stand for other objects: `h = G; h.sort()` changes G), declares `global`, reaches names
dynamically (`setattr`, `globals`, `exec`, ...) or calls code of the program that writes module state; it
*changes its arguments* when it may change an object passed to it; a method other than a constructor that may
change `self` changes the object it is called on. Calls of the program's code are matched by name (`f(...)`,
`obj.f(...)`): a method shares what is known of every definition of its name, and a class counts as what any of
its methods does. Where unsure, code counts as changing state.
"""

from __future__ import annotations

import ast
import builtins
import collections

from ssd_jax.evals.name_reads import root_name
from ssd_jax.evals.object_links import change_sites, function_name, links_of, reached

BY_STRING = {"globals", "eval", "exec", "vars", "locals"}
STATE_BUILTINS = BY_STRING | {"setattr", "delattr", "__import__"}
_CONSTRUCTORS = {"__init__", "__new__", "__post_init__"}
_BUILTIN_NAMES = frozenset(dir(builtins))


def _imported(node: ast.AST) -> set[str]:
  imports = (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
  return {a.asname or a.name.split(".")[0] for n in imports for a in n.names}


class _Function:
  """What one function or method may change, given what is known of the program's other code."""

  def __init__(self, node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool, modules: set[str]):
    a = node.args
    params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if p is not None]
    decorators = {root_name(d) for d in node.decorator_list}
    self.self_name = params[0] if method and params and "staticmethod" not in decorators else None
    self.own = set(params) - {self.self_name}
    self.name, self.node = node.name, node
    self.constructor = node.name in _CONSTRUCTORS
    imported = _imported(node)
    # A module object is not state: `math.gcd(a, b)` returns none of math.
    self.not_state = modules | imported | _BUILTIN_NAMES
    self.local = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    self.local |= set(params) | imported
    self.links = links_of(node, into_functions=True)
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
    self.state = any(isinstance(n, ast.Global) for n in ast.walk(node))
    self.state |= any(root_name(c.func) in STATE_BUILTINS for c in calls)
    self.called = {c for call in calls for c in (root_name(call.func), function_name(call)) if c}

  def effects(self, module_writers, argument_writers, method_writers) -> tuple[bool, bool, bool]:
    """(may write module state, may change its arguments, may change `self`)."""
    sites = change_sites(self.node, True, method_writers, argument_writers)
    changed = reached(self.links, sites) - self.not_state
    module = self.state or bool(self.called & module_writers) or bool(changed - self.local)
    changes_self = self.self_name in changed and not self.constructor
    return module, bool(changed & self.own), changes_self


class ProgramEffects:
  """Which of a program's top-level functions, classes and methods may change state, and how.

  Attributes:
    modules: names the program's top-level imports bind.
    definitions: names of its top-level functions and classes.
    declared_global: names any `global` statement declares.
    module_writers: names of functions, classes and methods that may write module state.
    argument_writers: names of those that may change an object passed to them.
    method_writers: names of methods that may change the object they are called on.
    pure: the definitions that neither write module state nor change their arguments, and the names bound at
      the top level to an instance of such a class (`sol = Solution()`).
  """

  def __init__(self, body: list[ast.stmt]):
    defs = {s.name: s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    self.modules = set().union(*(_imported(s) for s in body if isinstance(s, (ast.Import, ast.ImportFrom))))
    self.definitions = set(defs)
    self.declared_global = {name for s in body for n in ast.walk(s) if isinstance(n, ast.Global) for name in n.names}
    functions = []  # (facts, the names a call of it goes by)
    for name, node in defs.items():
      if isinstance(node, ast.ClassDef):
        methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        functions += [(_Function(m, True, self.modules), {name, m.name}) for m in methods]
      else:
        functions.append((_Function(node, False, self.modules), {name}))
    self.module_writers, self.argument_writers, self.method_writers = set(), set(), set()
    callers = collections.defaultdict(list)
    for k, (facts, _) in enumerate(functions):
      for called in facts.called:
        callers[called].append(k)
    work = collections.deque(range(len(functions)))
    queued = set(work)
    while work:  # A function is looked at again only when code it calls is found to change more.
      k = work.popleft()
      queued.discard(k)
      facts, names = functions[k]
      module, arguments, changes_self = facts.effects(self.module_writers, self.argument_writers, self.method_writers)
      found = [(self.module_writers, n) for n in names if module]
      found += [(self.argument_writers, n) for n in names if arguments]
      found += [(self.method_writers, facts.name)] if changes_self else []
      for kind, name in found:
        if name not in kind:
          kind.add(name)
          for j in callers[name]:
            if j not in queued:
              work.append(j)
              queued.add(j)
    self.pure = set(defs) - self.module_writers - self.argument_writers
    classes = {n for n, s in defs.items() if isinstance(s, ast.ClassDef)} & self.pure
    # An instance made at the top level (`sol = Solution()`): its methods are the class's code.
    self.instances = {
      t.id
      for s in body
      if isinstance(s, ast.Assign) and isinstance(s.value, ast.Call) and root_name(s.value.func) in classes
      for t in s.targets
      if isinstance(t, ast.Name)
    }
    self.pure |= self.instances

  def changed_names(self, node: ast.AST) -> set[str]:
    """The names whose objects top-level code `node` may change in place (lambdas under it included: a call of
    the statement may run them)."""
    sites = change_sites(node, True, self.method_writers, self.argument_writers)
    return {name for name, _ in sites}
