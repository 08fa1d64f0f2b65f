"""What calling a program's own functions, classes and methods may change, and what it may return.

A function or method *writes module state* when it may change an object it does not bind (`object_changes`
follows the names that stand for other objects: `h = G; h.sort()` changes G), a mutable default of its
parameters (it outlives the call) or an object its class's body binds (`res = []`, shared by the instances),
declares `global`, reaches names dynamically (`setattr`, `globals`, `exec`, ...), calls into a module that keeps
state (`sys.setrecursionlimit`, `random.seed`; not `math`, `itertools`, ...) or calls code of the program that
writes module state; it *changes its arguments* when it may change an object passed to it; a method other than a
constructor that may change `self` changes the object it is called on. What one method keeps in `self`
(`self.log = HISTORY`) is known to every method of its class, and a call may return the module objects its
callee's return values reach (`get()` returning G). Calls of the program's code are matched by name (`f(...)`,
`obj.f(...)`): a method shares what is known of every definition of its name, and a class counts as what any of
its methods does. Where unsure, code counts as changing state.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
from collections.abc import Mapping

from ssd_jax.data.code_names import BUILTIN_NAMES
from ssd_jax.evals.name_reads import chain_roots, free_reads, own_bindings, parameter_names, root_name
from ssd_jax.evals.object_changes import call_effects, change_sites, mutator_aliases, reached
from ssd_jax.evals.object_links import Known, function_name, links_of, sources

BY_STRING = {"globals", "eval", "exec", "vars", "locals"}
STATE_BUILTINS = BY_STRING | {"setattr", "delattr", "__import__"}
_CONSTRUCTORS = {"__init__", "__new__", "__post_init__"}
# Modules whose functions keep no state a later call could see.
_QUIET_MODULES = frozenset(
  "math cmath itertools functools operator string re json collections heapq bisect statistics fractions copy "
  "textwrap typing time datetime unicodedata numbers pprint numpy".split()
)


def imported_from(node: ast.AST) -> dict[str, str]:
  """{name an import under `node` binds: the top-level module it comes from}."""
  found = {}
  for n in ast.walk(node):
    if isinstance(n, ast.Import):
      found.update({a.asname or a.name.split(".")[0]: a.name.split(".")[0] for a in n.names})
    elif isinstance(n, ast.ImportFrom):
      found.update({a.asname or a.name: (n.module or "").split(".")[0] for a in n.names})
  return found


def quiet_call(call: ast.Call, modules: Mapping[str, str], root: str | None = None) -> bool:
  """Whether `call` changes no module's state a later call could see: not a call into a module (`modules`: {name:
  its module}), or one into a module of pure functions (`math.gcd`, `os.path.join`, `numpy.sum`) that does not
  seed or set anything, or a write to standard output or error. `root`: `root_name(call.func)`, when known."""
  module = modules.get(root_name(call.func) if root is None else root)
  if module is None:
    return True
  chain, node = [], call.func
  while isinstance(node, ast.Attribute):  # A module's function is a short chain (`np.random.seed`).
    chain.append(node.attr)
    node = node.value
  if chain[-2:] in (["write", "stdout"], ["write", "stderr"], ["flush", "stdout"]) or chain[-1:] == ["path"]:
    return module in ("sys", "os")
  return module in _QUIET_MODULES and not any(a == "random" or a.startswith(("set", "seed")) for a in chain)


def _shared_class_data(node: ast.ClassDef) -> bool:
  """Whether a class's body binds an object that is not a constant (`res = []`): its instances share it."""
  values = [s.value for s in node.body if isinstance(s, (ast.Assign, ast.AnnAssign)) and s.value is not None]
  return any(not isinstance(v, ast.Constant) for v in values)


def _persistent_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
  """Parameters whose default is an object made once, when the function is defined (`memo={}`)."""
  a = node.args
  positional = [*a.posonlyargs, *a.args]
  pairs = [*zip(positional[len(positional) - len(a.defaults) :], a.defaults), *zip(a.kwonlyargs, a.kw_defaults)]
  return {p.arg for p, d in pairs if d is not None and not isinstance(d, ast.Constant)}


class _Function:
  """What one function or method may change; looked at again as more of the program's code is found to change."""

  def __init__(
    self,
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    method: bool,
    modules: Mapping[str, str],
    known: Known,
    held=(),
    class_state: bool = False,
  ):
    params = parameter_names(node)
    decorators = {root_name(d) for d in node.decorator_list}
    self.self_name = params[0] if method and params and "staticmethod" not in decorators else None
    self.own = set(params) - {self.self_name}
    self.name, self.node, self.known = node.name, node, known
    self.constructor = node.name in _CONSTRUCTORS
    imported = imported_from(node)
    modules = {**modules, **imported}
    self.not_state = set(modules) | BUILTIN_NAMES  # `math.gcd(a, b)` returns none of math.
    self.local = (own_bindings(node) | set(imported)) - _persistent_parameters(node)
    # A nested function's own names (`def backtrack(path): path.append(...)`), unless it reads them from outside.
    nested = [n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    self.local |= set().union(*(own_bindings(n) for n in nested if n is not node)) - free_reads(node)
    self.links = links_of(node, into_functions=True, known=known)
    if self.self_name is not None:  # What any method of the class keeps in `self`; `super()` is `self` too.
      self.links[self.self_name] = self.links[self.self_name] + [(n, None, 1) for n in held]
      self.links["super"] = [(self.self_name, 0, 0)]
    self.class_state = class_state  # Items of `self` may be the class's own (`res = []` in its body).
    self.state = any(isinstance(n, ast.Global) for n in ast.walk(node))
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
    roots = chain_roots(node)
    callees = [roots.get(id(c.func), getattr(c.func, "id", None)) for c in calls]
    self.state |= any(r in STATE_BUILTINS or not quiet_call(c, modules, r) for c, r in zip(calls, callees, strict=True))
    # Every name it reads, called or passed on (a callee's effects count either way).
    self.called = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {function_name(c) for c in calls}
    self._static_sites: list | None = None  # Found on the first `effects` (`returned` alone needs neither).
    self._call_effects: dict = {}
    self._applied: set[tuple[str, int]] = set()
    self._seen: set = set()
    self._changed: set[str] = set()

  def self_reach(self) -> set[str]:
    """Module names `self`'s object may hold after this method, at some depth."""
    if self.self_name is None:
      return set()
    return reached(self.links, [(self.self_name, None)]) - self.local - self.not_state

  def returned(self) -> tuple[set[str], bool]:
    """(module names the value a call returns or yields may be or hold, whether it may hold `self`'s)."""
    values = [n.value for n in ast.walk(self.node) if isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom))]
    starts = [(name, None) for v in values if v is not None for name, _, _ in sources(v, self.known)]
    found = reached(self.links, starts)
    return found - self.local - self.not_state, self.self_name in found

  def effects(self, module_writers, argument_writers, method_writers) -> tuple[bool, bool, bool]:
    """(may write module state, may change its arguments, may change `self`); each call follows only what is
    new since the last."""
    if self._static_sites is None:
      self._static_sites = change_sites(self.node, True, self.known)
      self._call_effects = call_effects(self.node, self.known)
    sites, self._static_sites = self._static_sites, []
    for kind, writers in ((0, argument_writers), (1, method_writers)):
      for name in (self._call_effects.keys() & writers) - {n for k, n in self._applied if k == kind}:
        self._applied.add((kind, name))
        sites += self._call_effects[name][kind]
    self._changed |= reached(self.links, sites, self._seen) - self.not_state
    module = self.state or bool(self.called & module_writers) or bool(self._changed - self.local)
    module |= self.class_state and any(n == self.self_name and d != 0 for n, d in self._seen)
    changes_self = self.self_name in self._changed and not self.constructor
    return module, bool(self._changed & self.own), changes_self


class ProgramEffects:
  """Which of a program's top-level functions, classes and methods may change state, and how.

  Attributes:
    modules: {name a top-level import binds: its top-level module}.
    definitions: names of the program's top-level functions and classes.
    declared_global: names any `global` statement declares.
    module_writers: names of functions, classes and methods that may write module state.
    known: what `object_links` needs of the program (what calls of its code may return, which change their
      arguments or the object they are called on).
    pure: the definitions that neither write module state nor change their arguments, and the names bound at
      the top level to an instance of a class that writes no module state (`sol = Solution()`: a method that
      changes its arguments is seen where it is called).
    quiet: the definitions that write no module state (a call of one with no live argument changes nothing).
  """

  def __init__(self, body: list[ast.stmt]):
    defs = {s.name: s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    imports = [s for s in body if isinstance(s, (ast.Import, ast.ImportFrom))]
    self.modules = {name: module for s in imports for name, module in imported_from(s).items()}
    self.definitions = set(defs)
    self.declared_global = {name for s in body for n in ast.walk(s) if isinstance(n, ast.Global) for name in n.names}
    members = {}  # {definition: its functions (a class: its methods)}
    for name, node in defs.items():
      is_class = isinstance(node, ast.ClassDef)
      members[name] = (
        [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))] if is_class else [node]
      )
    classes = {n for n, s in defs.items() if isinstance(s, ast.ClassDef)}
    # Classes whose body binds an object its instances share (`res = []`): a change inside `self` may be one.
    sharing = {name for name in classes if _shared_class_data(defs[name])}
    known = self._returns(defs, members, classes)
    functions = []  # (facts, the names a call of it goes by)
    for name, nodes in members.items():
      held = known.returns.get(name, ()) if name in classes else ()
      functions += [
        (_Function(n, name in classes, self.modules, known, held, name in sharing), {name, n.name}) for n in nodes
      ]
    self.module_writers, argument_writers, method_writers = set(), set(), set()
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
      module, arguments, changes_self = facts.effects(self.module_writers, argument_writers, method_writers)
      found = [(self.module_writers, n) for n in names if module]
      found += [(argument_writers, n) for n in names if arguments]
      found += [(method_writers, facts.name)] if changes_self else []
      for kind, name in found:
        if name not in kind:
          kind.add(name)
          for j in callers[name]:
            if j not in queued:
              work.append(j)
              queued.add(j)
    self.known = dataclasses.replace(
      known, method_writers=frozenset(method_writers), argument_writers=frozenset(argument_writers)
    )
    self.quiet = set(defs) - self.module_writers
    classes &= self.quiet
    # An instance made at the top level (`sol = Solution()`): its methods are the class's code.
    self.instances = {
      t.id
      for s in body
      if isinstance(s, ast.Assign) and isinstance(s.value, ast.Call) and root_name(s.value.func) in classes
      for t in s.targets
      if isinstance(t, ast.Name)
    }
    self.pure = (self.quiet - argument_writers) | self.instances
    self._aliases = mutator_aliases(ast.Module(body=body, type_ignores=[]))

  def _returns(self, defs: dict, members: dict, classes: set[str]) -> Known:
    """What a call of each of the program's functions, classes and methods may return, as module names (a class:
    what its instances hold): found with each call of the program's code standing for itself, then resolved. A
    decorated function may return one object on every call (`lru_cache`): its calls may return the function's."""
    program = set(members) | {n.name for nodes in members.values() for n in nodes}
    imported = frozenset(self.modules)
    placeholder = Known(returns={name: frozenset([name]) for name in program}, imported=imported)
    direct = collections.defaultdict(set)
    not_data = program | set(self.modules) | BUILTIN_NAMES
    for name, nodes in members.items():
      facts = [_Function(n, name in classes, self.modules, placeholder) for n in nodes]
      held = set().union(*(f.self_reach() for f in facts)) if name in classes else set()
      if name in classes:  # What its body binds (`data = G`) every instance reaches.
        body = [s for s in defs[name].body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
        held |= set().union(*(free_reads(s) for s in body)) - not_data
      direct[name] |= held
      for f in facts:
        found, holds_self = f.returned()
        direct[f.name] |= found | (held if holds_self else set())
        direct[name] |= set() if name in classes else found
    resolved = {name: found - program for name, found in direct.items()}
    for name, node in defs.items():
      if any(root_name(d) not in ("staticmethod", "classmethod", "property") for d in node.decorator_list):
        resolved.setdefault(name, set()).add(name)
    callers = collections.defaultdict(set)
    for name, found in direct.items():
      for callee in found & program:
        callers[callee].add(name)
    work = collections.deque(resolved)
    while work:  # A name's set grows only by module names: each grows a bounded number of times.
      callee = work.popleft()
      for name in callers[callee]:
        if not resolved.get(callee, set()) <= resolved.setdefault(name, set()):
          resolved[name] |= resolved[callee]
          work.append(name)
    return Known(returns={name: frozenset(found) for name, found in resolved.items()}, imported=imported)

  def changed_names(self, node: ast.AST) -> set[str]:
    """The names whose objects top-level code `node` may change in place (lambdas under it included: a call of
    the statement may run them)."""
    return {name for name, _ in change_sites(node, True, self.known, self._aliases)}
