"""What of a program is a usage example rather than its solution, so two solutions compare by their definitions.

A program graded through its definitions often ends with a usage example: `print(f(3))`, an assert, an
`if __name__ == "__main__":` block, and the assignments that feed them (`n = 3`, `result = f(n)`,
`print(result)`). Those are left out of the solution's form (`correct_diversity.solution_form`):

* a `__main__` guard without `else` (its body does not run when graded; one with `else` is kept);
* a top-level expression statement or assert, unless it may change what the solution reads (*live* names):
  it binds a name (walrus), mutates a live name (`COINS.sort()`, `T[k] = v`), passes a live name to anything
  but a printing/measuring builtin or one of the program's functions that changes nothing, calls one of the
  program's functions or classes that writes module state or through its arguments, or reaches names
  dynamically (`setattr`, `globals`, `exec`, ...);
* an assignment (`=`) of plain names no definition, import or `global` binds, whose value is literal data or,
  changing nothing as above, a call of the program's side-effect-free function or class (or an instance of
  one made at the top level), when usage already left out reads the names, nothing kept reads them, and a
  call's result is read only as data (printed, compared, indexed, its attributes read: a name usage calls or
  passes to a function may be the function under test, `total = pick(loop)`).

What changes state is recognised syntactically (stores, `global`, mutating methods, library functions that
mutate an argument, `setattr` and the like), through the program's own functions transitively; where unsure
code is kept, which can split two copies of one solution but not merge two solutions. A program that reaches
names by string (`globals`, `eval`, `exec`, `vars`, `locals`) keeps every assignment.
"""

from __future__ import annotations

import ast
import builtins
import collections

from ssd_jax.evals.name_reads import free_reads, root_name

_BY_STRING = {"globals", "eval", "exec", "vars", "locals"}
_STATE_BUILTINS = _BY_STRING | {"setattr", "delattr", "__import__"}
# Builtins that only look at their positional arguments: a name passed to one is read as data.
_DATA_SINKS = {"print", "str", "repr", "len", "sorted", "list", "tuple", "set", "sum", "min", "max", "abs", "round"}
_MUTATORS = set(
  "append extend insert pop remove clear sort reverse update add discard setdefault popitem appendleft extendleft "
  "popleft rotate difference_update intersection_update symmetric_difference_update __setitem__ __delitem__".split()
)
# Library functions that change their first argument in place (`heapq.heapify(h)`, `random.shuffle(xs)`).
_MUTATING_FUNCTIONS = set(
  "heappush heappop heapify heapreplace heappushpop shuffle insort insort_left insort_right setitem delitem".split()
)
_BUILTIN_NAMES = frozenset(dir(builtins))
_DATA_PARENTS = (ast.FormattedValue, ast.Compare, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Subscript, ast.Assign)


def is_main_guard(node: ast.stmt) -> bool:
  """Whether `node` is `if __name__ == "__main__":` (either way round)."""
  test = node.test if isinstance(node, ast.If) else None
  if not (isinstance(test, ast.Compare) and [type(o) for o in test.ops] == [ast.Eq]):
    return False
  sides = {ast.dump(test.left), ast.dump(test.comparators[0])}
  return sides == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))}


def _mutated(node: ast.AST) -> set[str]:
  """Names whose objects `node` may change in place: stores and deletes into them, mutating method calls."""
  found = set()
  for n in ast.walk(node):
    targets = n.targets if isinstance(n, (ast.Assign, ast.Delete)) else [getattr(n, "target", None)]
    found |= {r for t in targets if isinstance(t, (ast.Attribute, ast.Subscript)) if (r := root_name(t))}
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _MUTATORS:
      found |= {r for r in [root_name(n.func.value)] if r}
  return found


def _calls(node: ast.AST) -> list[ast.Call]:
  return [n for n in ast.walk(node) if isinstance(n, ast.Call)]


def _function_name(call: ast.Call) -> str | None:
  """`f` of `f(...)` and of `module.f(...)`."""
  return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def _arguments(call: ast.Call) -> set[str]:
  """Names whose objects a call receives: `f(x)`, `f(x.items)`, `f(key=x)`, `f(*xs)` (not `f(g(x))`: the inner
  call is looked at on its own)."""
  values = [a.value if isinstance(a, ast.Starred) else a for a in (*call.args, *(k.value for k in call.keywords))]
  return {r for v in values if isinstance(v, (ast.Name, ast.Attribute, ast.Subscript)) if (r := root_name(v))}


def _function_like(node: ast.AST) -> set[str]:
  """Names `node` reads anywhere but as data: called, passed to a call that is not a data sink, in a container,
  through a dunder attribute... (usage may treat them as functions)."""
  parents = {id(child): parent for parent in ast.walk(node) for child in ast.iter_child_nodes(parent)}
  found = set()
  for name in (n for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)):
    parent = parents.get(id(name))
    sink_argument = (
      isinstance(parent, ast.Call)
      and any(a is name for a in parent.args)
      and isinstance(parent.func, ast.Name)
      and parent.func.id in _DATA_SINKS
    )
    attribute = isinstance(parent, ast.Attribute) and not parent.attr.startswith("__")
    if not (sink_argument or attribute or isinstance(parent, _DATA_PARENTS)):
      found.add(name.id)
  return found


class _Effects:
  """Which of a program's top-level functions and classes may change state, and how."""

  def __init__(self, body: list[ast.stmt]):
    defs = {s.name: s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    imports = [s for s in body if isinstance(s, (ast.Import, ast.ImportFrom))]
    self.modules = {a.asname or a.name.split(".")[0] for s in imports for a in s.names}
    self.definitions = set(defs)
    self.declared_global = {name for s in body for n in ast.walk(s) if isinstance(n, ast.Global) for name in n.names}
    self.writes_module, self.writes_arguments = set(), set()
    for name, node in defs.items():
      is_class = isinstance(node, ast.ClassDef)
      functions = (
        [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))] if is_class else [node]
      )
      for function in functions:
        module, arguments = self._writes(function, is_class)
        if module:
          self.writes_module.add(name)
        if arguments:
          self.writes_arguments.add(name)
    calls = {name: {c for c in map(root_name, _calls(node)) if c} for name, node in defs.items()}
    changed = True
    while changed:  # A function calling one that writes state writes it too.
      changed = False
      for name, called in calls.items():
        for kind in (self.writes_module, self.writes_arguments):
          if name not in kind and called & kind:
            kind.add(name)
            changed = True
    self.pure = set(defs) - self.writes_module - self.writes_arguments
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

  def _writes(self, function, method: bool) -> tuple[bool, bool]:
    """(may write module state, may write through its arguments) for one function or method."""
    a = function.args
    params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if p is not None]
    own = set(params[1:] if method and params else params)  # A method's `self` is the instance it works on.
    local = {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    local |= set(params)
    calls = _calls(function)
    changed = _mutated(function) | {n for c in calls if _function_name(c) in _MUTATING_FUNCTIONS for n in _arguments(c)}
    module = any(isinstance(n, ast.Global) for n in ast.walk(function)) or bool(changed - local - _BUILTIN_NAMES)
    module |= any(root_name(c.func) in _STATE_BUILTINS for c in calls)
    return module, bool(changed & own)

  def may_change(self, node: ast.AST, live: set[str]) -> bool:
    """Whether running `node` may change a live name or the program's state (see the module docstring)."""
    if any(isinstance(n, ast.NamedExpr) for n in ast.walk(node)) or _mutated(node) & live:
      return True
    for call in _calls(node):
      callee = root_name(call.func)
      if callee in _STATE_BUILTINS or callee in self.writes_module:
        return True
      harmless = callee in self.pure or (isinstance(call.func, ast.Name) and callee in _DATA_SINKS)
      if _arguments(call) & live - self.modules and not harmless:
        return True
    return False


def solution_statements(body: list[ast.stmt]) -> list[ast.stmt]:
  """The top-level statements of `body` that are not usage (see the module docstring), in order.

  Args:
    body: a parsed program's top-level statements (of a program that does not read standard input).
  """
  effects = _Effects(body)
  reads = [free_reads(s) for s in body]
  guards = [is_main_guard(s) and not s.orelse for s in body]
  usage = [g or isinstance(s, (ast.Expr, ast.Assert)) for g, s in zip(guards, body, strict=True)]
  bindings = [_binding(s, effects) for s in body]
  if set().union(*reads) & _BY_STRING:  # Names reached by string: only what never runs when graded goes.
    return [s for s, guard in zip(body, guards, strict=True) if not guard]
  # Live names, grown by a worklist: what kept code reads, through the candidate assignments that bind them.
  live: set[str] = set()
  pending = collections.deque()
  binders, mentioning = collections.defaultdict(list), collections.defaultdict(list)
  for i, (names, _) in enumerate(bindings):
    for name in names:
      binders[name].append(i)
  for i in (i for i, u in enumerate(usage) if u and not guards[i]):
    for name in {n.id for n in ast.walk(body[i]) if isinstance(n, ast.Name)}:
      mentioning[name].append(i)

  def keep(i: int) -> None:  # Statement i is solution code: what it reads is live.
    usage[i] = False
    for name in reads[i] - live:
      live.add(name)
      pending.append(name)

  for i in range(len(body)):
    if not usage[i] and not bindings[i][0] or usage[i] and not guards[i] and effects.may_change(body[i], live):
      keep(i)
  while pending:
    name = pending.popleft()
    for i in binders[name]:
      keep(i)
    for i in mentioning[name]:
      if usage[i] and effects.may_change(body[i], live):
        keep(i)
  return [body[i] for i in _without_usage_assignments(body, usage, reads, bindings, live, effects)]


def _binding(node: ast.stmt, effects: _Effects) -> tuple[set[str], bool]:
  """(names, value is a call) of an assignment that may be usage; no names when it may not."""
  targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
  if not targets or node.value is None:
    return set(), False
  stored = [n for t in targets for n in ast.walk(t) if isinstance(n, (ast.Attribute, ast.Subscript, ast.Name))]
  names = {n.id for n in stored if isinstance(n, ast.Name)}
  if len(names) != len(stored) or names & (effects.definitions | effects.modules | effects.declared_global):
    return set(), False
  if isinstance(node.value, ast.Call) and root_name(node.value) in effects.pure:
    return names, True
  try:
    ast.literal_eval(node.value)
  except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
    return set(), False
  return names, False


def _without_usage_assignments(
  body: list[ast.stmt], usage: list[bool], reads: list[set[str]], bindings: list, live: set[str], effects: _Effects
) -> list[int]:
  """The indices of the kept statements less the usage assignments (see the module docstring), each looked at
  again only when a statement reading its names is dropped."""
  kept = [i for i, u in enumerate(usage) if not u]
  usage_reads = set().union(*(r for r, u in zip(reads, usage, strict=True) if u))
  function_like = set().union(*(_function_like(s) for s, u in zip(body, usage, strict=True) if u))
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
    if i in dropped or not names & usage_reads or names & live or (is_call and names & function_like):
      continue
    if effects.may_change(body[i].value, live) or any(readers[name] - (name in reads[i]) for name in names):
      continue
    dropped.add(i)
    readers.subtract(reads[i])
    usage_reads |= reads[i]
    function_like |= _function_like(body[i].value)
    for j in (j for name in reads[i] for j in binders[name]):
      if j not in dropped and j not in queued:
        work.append(j)
        queued.add(j)
  return [i for i in kept if i not in dropped]
