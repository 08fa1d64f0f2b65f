"""What of a program is a usage example rather than its solution, so two solutions compare by their definitions.

A program graded through its definitions often ends with a usage example: `print(f(3))`, an assert, an
`if __name__ == "__main__":` block, and the assignments that feed them (`n = 3`, `result = f(n)`,
`print(result)`). Those are left out of the solution's form (`correct_diversity.solution_form`):

* a `__main__` guard without `else` (its body does not run when graded; one with `else` is kept);
* a top-level expression statement or assert, unless it may change what the solution reads (*live* names: what
  kept code reads, and the names that may stand for a live name's object, `h = G`, `s = Store(G)`): it binds a
  name (walrus), changes a live name's object (`COINS.sort()`, `T[k] = v`, `sol.push(3)` of a method that
  changes `self`), passes a live name to anything but a printing/measuring builtin or one of the program's
  functions that changes nothing, calls code of the program that writes module state, or reaches names
  dynamically (`setattr`, `globals`, `exec`, ...);
* an assignment (`=`) of plain names no definition, import or `global` binds, whose value is literal data or,
  changing nothing as above, a call of the program's side-effect-free function or class (or an instance of
  one made at the top level), when usage already left out reads the names, nothing kept reads them, and a
  call's result is read only as data (printed, compared, indexed, its attributes read: a name usage calls or
  passes to a function may be the function under test, `total = pick(loop)`).

What changes state is recognised syntactically, through the objects names stand for and the program's own
functions transitively (`program_effects`, `object_links`, `object_changes`), and a usage call of a module other
than a few that keep no state (`sys.setrecursionlimit`, `random.seed`) is kept; where unsure code is kept, which
can split two copies of one solution but not merge two solutions. A program that reaches names by string
(`globals`, `eval`, `exec`, `vars`, `locals`) keeps every assignment.
"""

from __future__ import annotations

import ast
import collections

from ssd_jax.data.code_names import BUILTIN_NAMES
from ssd_jax.evals.name_reads import free_reads, root_name
from ssd_jax.evals.object_links import call_values, function_name, links_of
from ssd_jax.evals.program_effects import BY_STRING, STATE_BUILTINS, ProgramEffects, quiet_call

# Builtins that only look at their positional arguments: a name passed to one is read as data.
_DATA_SINKS = {"print", "str", "repr", "len", "sorted", "list", "tuple", "set", "sum", "min", "max", "abs", "round"}
_DATA_PARENTS = (ast.FormattedValue, ast.Compare, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Subscript, ast.Assign)


def is_main_guard(node: ast.stmt) -> bool:
  """Whether `node` is `if __name__ == "__main__":` (either way round)."""
  test = node.test if isinstance(node, ast.If) else None
  if not (isinstance(test, ast.Compare) and [type(o) for o in test.ops] == [ast.Eq]):
    return False
  sides = {ast.dump(test.left), ast.dump(test.comparators[0])}
  return sides == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))}


def _arguments(call: ast.Call) -> set[str]:
  """Names whose objects a call receives: `f(x)`, `f(x.items)`, `f(key=x)`, `f(*xs)` (not `f(g(x))`: the inner
  call is looked at on its own)."""
  values = [a.value if isinstance(a, ast.Starred) else a for a in call_values(call)]
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


class _Touches:
  """What each top-level statement may change, found once (the live names grow; this does not)."""

  def __init__(self, effects: ProgramEffects):
    self.effects = effects
    self._found: dict[int, tuple[bool, set[str], set[str]]] = {}

  def may_change(self, node: ast.AST, live: set[str]) -> bool:
    """Whether running top-level `node` may change a live name or the program's state (see the module
    docstring)."""
    if id(node) not in self._found:
      self._found[id(node)] = self._touches(node)
    always, changed, passed = self._found[id(node)]
    return always or bool(changed & (live | self.effects.definitions)) or bool(passed & live)

  def _touches(self, node: ast.AST) -> tuple[bool, set[str], set[str]]:
    """(changes state whatever is live, names whose objects it changes, names it passes to code that may)."""
    effects = self.effects
    if any(isinstance(n, ast.NamedExpr) for n in ast.walk(node)):
      return True, set(), set()
    passed = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
      callee = root_name(call.func)
      if callee in STATE_BUILTINS or {callee, function_name(call)} & effects.module_writers:
        return True, set(), set()
      if not quiet_call(call, effects.modules, callee):
        return True, set(), set()  # `sys.setrecursionlimit(...)`, `random.seed(...)`
      if not (callee in effects.pure or isinstance(call.func, ast.Name) and callee in _DATA_SINKS):
        passed |= _arguments(call) - effects.modules.keys()
        # A callable object that is not the program's code (`push = lambda x: G.append(x)`, `q.put(1)`).
        passed |= {callee} - effects.definitions - effects.modules.keys() - BUILTIN_NAMES
    return False, effects.changed_names(node), passed


def solution_statements(body: list[ast.stmt]) -> list[ast.stmt]:
  """The top-level statements of `body` that are not usage (see the module docstring), in order.

  Args:
    body: a parsed program's top-level statements (of a program that does not read standard input).
  """
  effects = ProgramEffects(body)
  touches = _Touches(effects)
  reads = [free_reads(s) for s in body]
  guards = [is_main_guard(s) and not s.orelse for s in body]
  usage = [g or isinstance(s, (ast.Expr, ast.Assert)) for g, s in zip(guards, body, strict=True)]
  bindings = [_binding(s, effects) for s in body]
  if set().union(*reads) & BY_STRING:  # Names reached by string: only what never runs when graded goes.
    return [s for s, guard in zip(body, guards, strict=True) if not guard]
  # Live names, grown by a worklist: what kept code reads, through the candidate assignments that bind them,
  # and the names that may stand for a live name's object (`h = G`, `s = Store(G)`: changing them changes G).
  live: set[str] = set()
  pending = collections.deque()
  binders, mentioning = collections.defaultdict(list), collections.defaultdict(list)
  standing_for = collections.defaultdict(set)
  for s in body:
    if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      for name, links in links_of(s, into_functions=False, known=effects.known).items():
        for source, _, _ in links:
          standing_for[source].add(name)
  for i, (names, _) in enumerate(bindings):
    for name in names:
      binders[name].append(i)
  for i in (i for i, u in enumerate(usage) if u and not guards[i]):
    for name in {n.id for n in ast.walk(body[i]) if isinstance(n, ast.Name)}:
      mentioning[name].append(i)

  def make_live(name: str) -> None:
    if name not in live:
      live.add(name)
      pending.append(name)

  def keep(i: int) -> None:  # Statement i is solution code: what it reads is live.
    usage[i] = False
    for name in reads[i]:
      make_live(name)

  for i in range(len(body)):
    if not usage[i] and not bindings[i][0] or usage[i] and not guards[i] and touches.may_change(body[i], live):
      keep(i)
  while pending:
    name = pending.popleft()
    for alias in standing_for[name]:
      make_live(alias)
    for i in binders[name]:
      keep(i)
    for i in mentioning[name]:
      if usage[i] and touches.may_change(body[i], live):
        keep(i)
  return [body[i] for i in _without_usage_assignments(body, usage, reads, bindings, live, touches)]


def _binding(node: ast.stmt, effects: ProgramEffects) -> tuple[set[str], bool]:
  """(names, value is a call) of an assignment that may be usage; no names when it may not."""
  targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
  if not targets or node.value is None:
    return set(), False
  stored = [n for t in targets for n in ast.walk(t) if isinstance(n, (ast.Attribute, ast.Subscript, ast.Name))]
  names = {n.id for n in stored if isinstance(n, ast.Name)}
  if len(names) != len(stored) or names & (effects.definitions | effects.modules.keys() | effects.declared_global):
    return set(), False
  if isinstance(node.value, ast.Call) and root_name(node.value) in effects.quiet | effects.instances:
    return names, True
  try:
    ast.literal_eval(node.value)
  except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
    return set(), False
  return names, False


def _without_usage_assignments(
  body: list[ast.stmt],
  usage: list[bool],
  reads: list[set[str]],
  bindings: list,
  live: set[str],
  touches: _Touches,
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
    if touches.may_change(body[i].value, live) or any(readers[name] - (name in reads[i]) for name in names):
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
