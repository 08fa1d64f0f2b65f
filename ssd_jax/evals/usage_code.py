"""What of a program is a usage example rather than its solution, so two solutions compare by their definitions.

A program graded through its definitions often ends with a usage example: `print(f(3))`, an assert, an
`if __name__ == "__main__":` block, and the assignments that feed them (`n = 3`, `result = f(n)`,
`print(result)`). Those are left out of the solution's form (`correct_diversity.solution_form`); what the
solution's own code reads, or what changes it, is not:

* a top-level expression statement or assert is usage unless it binds a name (a walrus), calls a method of
  data the solution reads (`COINS.sort()`) or calls one of the program's functions that writes module state
  (`global`, `TABLE.append(...)`); a `__main__` guard is usage unless it has an `else`, which runs when graded;
* an assignment (`=`, not `+=`) is usage when it binds plain names that no definition or import binds too,
  and its value is literal data, or a call of a class or side-effect-free function the program defines, which
  the usage reads only as data (printed, compared, indexed: a name usage calls or passes to another function
  may be the function under test, `total = pick(loop)`); usage already left out must read it, and nothing kept.

Reads are found by scope (a function's parameters and locals are not the module's names) and over-approximated
where unsure, which keeps an assignment, never drops one. A program that reaches names by string (`globals`,
`eval`, `exec`, `vars`, `locals`) keeps every assignment.
"""

from __future__ import annotations

import ast
import builtins
import collections

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_BY_STRING = {"globals", "eval", "exec", "vars", "locals"}
# Calls whose arguments usage only looks at: a name passed to one of these is read as data.
_DATA_SINKS = {"print", "str", "repr", "len", "sorted", "list", "tuple", "set", "sum", "min", "max", "abs", "round"}


def is_main_guard(node: ast.stmt) -> bool:
  """Whether `node` is `if __name__ == "__main__":` (either way round)."""
  test = node.test if isinstance(node, ast.If) else None
  if not (isinstance(test, ast.Compare) and [type(o) for o in test.ops] == [ast.Eq]):
    return False
  sides = {ast.dump(test.left), ast.dump(test.comparators[0])}
  return sides == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))}


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
    walrus = {n.target.id for n in ast.walk(node) if isinstance(n, ast.NamedExpr)}
    return (reads - (bound - walrus)) | walrus | free_reads(first.iter)
  if isinstance(node, ast.ClassDef):
    reads, _, _ = _scope_reads([*node.body, *node.decorator_list, *node.bases, *node.keywords])
    return reads
  return _scope_reads([node])[0]


def _root_name(node: ast.AST) -> str | None:
  """`a` of `a.b.c(...)[i]`: the name an attribute, call or subscript chain starts from."""
  while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
    node = node.func if isinstance(node, ast.Call) else node.value
  return node.id if isinstance(node, ast.Name) else None


def _calls_on(node: ast.AST) -> set[str]:
  """Names whose methods `node` calls (`xs.sort()`, `a.b.append(1)`)."""
  return {
    r
    for n in ast.walk(node)
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    if (r := _root_name(n.func))
  }


def _writes_module_state(function: ast.FunctionDef | ast.AsyncFunctionDef, modules: set[str]) -> bool:
  """Whether a function may change module data: `global`, or a method call or item/attribute write on a name
  it does not bind itself that is not a module (`modules`, imported) or a builtin (`str.join`)."""
  a = function.args
  local = {p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if p is not None}
  local |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
  local |= modules | set(dir(builtins))
  for node in ast.walk(function):
    if isinstance(node, ast.Global):
      return True
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    stores = [t for t in targets if isinstance(t, (ast.Attribute, ast.Subscript))]
    if any(_root_name(t) not in local for t in stores):
      return True
  return bool(_calls_on(function) - local)


def _passed_on(node: ast.AST) -> set[str]:
  """Names `node` calls or passes to a call that does more than look at them: usage that may treat them as
  functions."""
  found = set()
  for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
    if isinstance(call.func, ast.Name):
      found.add(call.func.id)
      if call.func.id in _DATA_SINKS:
        continue
    found |= {a.id for a in (*call.args, *(k.value for k in call.keywords)) if isinstance(a, ast.Name)}
  return found


class _Program:
  """What the rules need to know about a program's top-level statements."""

  def __init__(self, body: list[ast.stmt]):
    defs = [s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    imports = [s for s in body if isinstance(s, (ast.Import, ast.ImportFrom))]
    modules = {a.asname or a.name.split(".")[0] for s in imports for a in s.names}
    self.pure = {s.name for s in defs if isinstance(s, ast.ClassDef) or not _writes_module_state(s, modules)}
    self.impure = {s.name for s in defs} - self.pure
    classes = {s.name for s in defs if isinstance(s, ast.ClassDef)}
    # An instance of the program's class made at the top level (`sol = Solution()`): its method calls are calls
    # of the program's code too (`result = sol.two_sum(nums, 9)`).
    self.pure |= {
      t.id
      for s in body
      if isinstance(s, ast.Assign) and isinstance(s.value, ast.Call) and _root_name(s.value.func) in classes
      for t in s.targets
      if isinstance(t, ast.Name)
    }
    declared_global = {name for s in body for n in ast.walk(s) if isinstance(n, ast.Global) for name in n.names}
    self.bound_by_definitions = {s.name for s in defs} | modules | declared_global

  def binding(self, node: ast.stmt) -> tuple[set[str], bool]:
    """(names, value is a call) of an assignment that may be usage; no names when it may not."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    if not targets or node.value is None or any(isinstance(n, ast.NamedExpr) for n in ast.walk(node.value)):
      return set(), False
    stored = [n for t in targets for n in ast.walk(t) if isinstance(n, (ast.Attribute, ast.Subscript, ast.Name))]
    names = {n.id for n in stored if isinstance(n, ast.Name)}
    if len(names) != len(stored) or names & self.bound_by_definitions:
      return set(), False
    if isinstance(node.value, ast.Call) and _root_name(node.value) in self.pure:
      return names, True
    try:
      ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
      return set(), False
    return names, False


def _live_reads(body: list[ast.stmt], usage: list[bool], reads: list[set[str]], bindings: list) -> set[str]:
  """Names the solution reads: what kept statements other than candidate usage assignments read, and what the
  candidates those read read in turn."""
  live = set().union(*(r for r, u, b in zip(reads, usage, bindings, strict=True) if not u and not b[0]))
  candidates = [i for i, (u, b) in enumerate(zip(usage, bindings, strict=True)) if not u and b[0]]
  grew = True
  while grew:
    grew = False
    for i in candidates:
      if bindings[i][0] & live and not reads[i] <= live:
        live |= reads[i]
        grew = True
  return live


def solution_statements(body: list[ast.stmt]) -> list[ast.stmt]:
  """The top-level statements of `body` that are not usage (see the module docstring), in order.

  Args:
    body: a parsed program's top-level statements (of a program that does not read standard input).
  """
  program = _Program(body)
  usage = [(isinstance(s, (ast.Expr, ast.Assert)) or (is_main_guard(s) and not s.orelse)) for s in body]
  usage = [u and not any(isinstance(n, ast.NamedExpr) for n in ast.walk(s)) for s, u in zip(body, usage, strict=True)]
  reads = [free_reads(s) for s in body]
  bindings = [program.binding(s) for s in body]
  while True:  # Usage that changes data the solution reads, or calls what may, is not usage.
    live = _live_reads(body, usage, reads, bindings)
    changing = [i for i, s in enumerate(body) if usage[i] and (_calls_on(s) & live or _passed_on(s) & program.impure)]
    if not changing:
      break
    for i in changing:
      usage[i] = False
  kept = [i for i, u in enumerate(usage) if not u]
  if set().union(*(reads[i] for i in kept)) & _BY_STRING:
    return [body[i] for i in kept]
  usage_reads = set().union(*(r for r, u in zip(reads, usage, strict=True) if u))
  passed_on = set().union(*(_passed_on(s) for s, u in zip(body, usage, strict=True) if u))
  readers = collections.Counter(name for i in kept for name in reads[i])
  binders = collections.defaultdict(list)
  for i in kept:
    for name in bindings[i][0]:
      binders[name].append(i)
  dropped: set[int] = set()
  work = collections.deque(reversed(kept))  # Latest first: a usage chain is usually read after it is built.
  queued = set(work)
  while work:
    i = work.popleft()
    queued.discard(i)
    names, is_call = bindings[i]
    if i in dropped or not names & usage_reads or (is_call and names & passed_on):
      continue
    if _calls_on(body[i].value) & live or any(readers[name] - (name in reads[i]) for name in names):
      continue
    dropped.add(i)
    readers.subtract(reads[i])
    usage_reads |= reads[i]
    passed_on |= _passed_on(body[i])
    for j in (j for name in reads[i] for j in binders[name]):  # Only these can have become droppable.
      if j not in dropped and j not in queued:
        work.append(j)
        queued.add(j)
  return [body[i] for i in kept if i not in dropped]
