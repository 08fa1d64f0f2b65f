"""Which objects a Python name may stand for, and which objects a piece of code changes in place.

Found syntactically, leaning towards "may": `usage_code` keeps a usage statement that may change what the
solution reads, so over-counting splits two copies of one solution, never merges two solutions.

A link from a name to a source name is `(source, offset, min_depth)`: changing the name's object at depth
`d >= min_depth` (0: the object itself, 1: one of its items or attributes, ...) may change the source's object at
depth `d + offset` (`None`: at some depth). `h = G` links h to G by (0, 0); `row = G[i]` by (1, 0): row is an item
of G; `res = [G]` by (-1, 1): changing the list itself leaves G alone, changing its item changes G; `copy =
G[:]` by (0, 1): the copy shares G's items. A value that holds nothing (`len(G)`, `[0] * n`, a comparison)
links to nothing, and a call the rules do not know links its result to everything it is given, at any depth.
"""

from __future__ import annotations

import ast
import builtins
import collections

# Methods that change the object they are called on (`xs.sort()`, `d.update(...)`).
MUTATORS = set(
  "append extend insert pop remove clear sort reverse update add discard setdefault popitem appendleft extendleft "
  "popleft rotate difference_update intersection_update symmetric_difference_update __setitem__ __delitem__".split()
)
_STORE_ITEM = {"append", "appendleft", "add", "insert", "setdefault", "__setitem__"}  # Their arguments become items.
_STORE_ITEMS = {"extend", "extendleft", "update"}  # Their argument's items become items.
# Library functions that change their first argument in place (`heapq.heapify(h)`, `operator.iadd(xs, ys)`).
MUTATING_FUNCTIONS = set(
  "heappush heappop heapify heapreplace heappushpop shuffle insort insort_left insort_right setitem delitem "
  "iadd iconcat ior iand ixor isub imul imatmul ifloordiv itruediv imod ipow ilshift irshift".split()
)
# Builtins whose result holds none of their arguments' objects.
_FRESH_RESULTS = set(
  "len abs int float complex str bool bytes repr ascii ord chr hash id isinstance issubclass callable round pow "
  "divmod hex bin oct format range all any".split()
)
# Calls whose result is a new object sharing items with their arguments (a shallow copy, an iterator).
_COPIES = set("list tuple set frozenset dict sorted reversed enumerate zip map filter iter copy".split())
_BUILTIN_NAMES = frozenset(dir(builtins))
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_MAX_DEPTH = 4  # Deeper is "some depth".


def function_name(call: ast.Call) -> str | None:
  """`f` of `f(...)` and of `obj.f(...)`."""
  return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def walk(node: ast.AST, into_functions: bool = True):
  """`ast.walk`, optionally not entering the functions, lambdas and classes below `node`."""
  stack = [node]
  while stack:
    n = stack.pop()
    yield n
    if into_functions or n is node or not isinstance(n, _FUNCTIONS):
      stack.extend(ast.iter_child_nodes(n))


def _shift(links, offset, min_depth):
  """Links composed with one more step: `offset` added, `min_depth` raised (see `sources`)."""
  return [(n, None if o is None or offset is None else o + offset, max(0, m + min_depth)) for n, o, m in links]


def _anything(node: ast.AST) -> list:
  return [(n.id, None, 0) for n in ast.walk(node) if isinstance(n, ast.Name)]


def sources(node: ast.AST | None) -> list[tuple[str, int | None, int]]:
  """The links of the value `node` evaluates to (see the module docstring)."""
  if node is None or isinstance(node, (ast.Constant, ast.JoinedStr, ast.Compare, ast.UnaryOp, ast.Lambda)):
    return []
  if isinstance(node, ast.Name):
    return [(node.id, 0, 0)]
  if isinstance(node, (ast.Starred, ast.NamedExpr, ast.Await)):
    return sources(node.value)
  if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
    return [(n, o, max(1, m)) for n, o, m in sources(node.value)]  # A slice: a copy sharing the items.
  if isinstance(node, (ast.Attribute, ast.Subscript)):
    return _shift(sources(node.value), 1, -1)  # An item: changing it at d changes the container at d + 1.
  if isinstance(node, ast.IfExp):
    return sources(node.body) + sources(node.orelse)
  if isinstance(node, ast.BoolOp):
    return [link for v in node.values for link in sources(v)]
  if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
    return [link for e in node.elts for link in _shift(sources(e), -1, 1)]
  if isinstance(node, ast.Dict):
    return [link for e in (*node.keys, *node.values) for link in _shift(sources(e), -1, 1)]
  if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
    parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
    return [link for e in parts for link in _shift(sources(e), -1, 1)]  # Loop variables link through bindings.
  if isinstance(node, ast.BinOp):
    sides = [s for s in (node.left, node.right) if isinstance(s, (ast.List, ast.Tuple))]
    if isinstance(node.op, ast.Mult) and sides:  # `[0] * n`: copies of the literal's items, nothing of n.
      return sources(sides[0])
    return [(n, o, max(1, m)) for s in (node.left, node.right) for n, o, m in sources(s)]  # `a + b`: shares items.
  if isinstance(node, ast.Call):
    name = function_name(node)
    if isinstance(node.func, ast.Name) and name in _FRESH_RESULTS or name == "deepcopy":
      return []
    receiver = [node.func.value] if isinstance(node.func, ast.Attribute) else []
    given = [link for a in (*receiver, *node.args, *(k.value for k in node.keywords)) for link in _anything(a)]
    return [(n, None, 1) for n, _, _ in given] if name in _COPIES else given
  return _anything(node)


def _target_chain(target: ast.AST) -> tuple[str | None, int | None]:
  """(root, links) of a store target `r.a[k]`: the stored value becomes r's item at depth `links` (None when
  the chain passes through a call)."""
  links, node = 0, target
  while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
    links = None if isinstance(node, ast.Call) or links is None else links + 1
    node = node.func if isinstance(node, ast.Call) else node.value
  return (node.id if isinstance(node, ast.Name) else None), links


def links_of(root: ast.AST, into_functions: bool) -> dict[str, list]:
  """{name: its links} from the bindings under `root`: assignments, loop, `with` and walrus targets, stores into
  a name's items and the mutating methods that store their arguments."""
  links = collections.defaultdict(list)

  def bind(target, value, element=False):
    if element:  # A loop or unpacking target is an item of the value.
      value = _shift(value, 1, -1)
    if isinstance(target, ast.Name):
      links[target.id] += value
    elif isinstance(target, (ast.Tuple, ast.List)):
      for t in target.elts:
        bind(t, value, element=True)
    elif isinstance(target, ast.Starred):
      bind(target.value, value)
    elif isinstance(target, (ast.Attribute, ast.Subscript)):
      hold(target, value)

  def hold(chain, value, extra=0):  # The value becomes an item of `chain`'s root, `extra` levels below it.
    root, depth = _target_chain(chain)
    if root is not None:
      links[root] += _shift(value, -(depth + extra), depth + extra) if depth is not None else _shift(value, None, 1)

  for n in walk(root, into_functions):
    if isinstance(n, ast.Assign):
      for t in n.targets:
        bind(t, sources(n.value))
    elif isinstance(n, (ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
      bind(n.target, sources(n.value))
    elif isinstance(n, ast.AugAssign):  # `xs += ys` shares ys's items.
      bind(n.target, [(m, o, max(1, d)) for m, o, d in sources(n.value)])
    elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
      bind(n.target, sources(n.iter), element=True)
    elif isinstance(n, ast.withitem) and n.optional_vars is not None:
      bind(n.optional_vars, sources(n.context_expr))
    elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _STORE_ITEM | _STORE_ITEMS:
      given = [link for a in (*n.args, *(k.value for k in n.keywords)) for link in sources(a)]
      if n.func.attr in _STORE_ITEMS:
        given = [(m, o, max(1, d)) for m, o, d in given]
      hold(n.func, given, extra=0 if n.func.attr in _STORE_ITEMS else 1)
  return links


def _changed(node: ast.AST, depth: int | None = 0) -> list[tuple[str, int | None]]:
  """[(name, depth)] changed when the object `node` evaluates to changes at `depth` (None: some depth)."""
  return [
    (n, None if depth is None or o is None else depth + o) for n, o, m in sources(node) if depth is None or depth >= m
  ]


def change_sites(root: ast.AST, into_functions: bool, method_writers=frozenset(), argument_writers=frozenset()):
  """[(name, depth)] of the objects the code under `root` changes in place: stores into items and attributes,
  augmented assignments, mutating methods and library functions, and calls of the program's methods that change
  `self` (`method_writers`) or of its code that changes its arguments (`argument_writers`), at some depth."""
  sites = []
  for n in walk(root, into_functions):
    targets = list(n.targets) if isinstance(n, (ast.Assign, ast.Delete)) else []
    targets = [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else targets
    while targets:
      t = targets.pop()
      if isinstance(t, (ast.Tuple, ast.List, ast.Starred)):
        targets.extend(t.elts if not isinstance(t, ast.Starred) else [t.value])
      elif isinstance(t, (ast.Attribute, ast.Subscript)):
        sites += _changed(t.value)
    if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
      sites.append((n.target.id, 0))
    if not isinstance(n, ast.Call):
      continue
    name = function_name(n)
    receiver = n.func.value if isinstance(n.func, ast.Attribute) else None
    if receiver is not None and name in MUTATORS:
      sites += _changed(receiver)
    if receiver is not None and name in method_writers:
      sites += _changed(receiver, None)
    # `list.sort(xs)`, `dict.update(d, ...)`: a method called through its class changes its first argument.
    unbound = isinstance(receiver, ast.Name) and receiver.id in _BUILTIN_NAMES and name in MUTATORS
    if n.args and (unbound or name in MUTATING_FUNCTIONS):
      sites += _changed(n.args[0])
    if name in argument_writers:
      sites += [site for a in (*n.args, *(k.value for k in n.keywords)) for site in _changed(a, None)]
  return sites


def reached(links: dict[str, list], sites) -> set[str]:
  """The names whose objects changing `sites` ([(name, depth)]) may change, following `links`."""
  seen = set()
  stack = list(sites)
  while stack:
    name, depth = stack.pop()
    if (name, depth) in seen:
      continue
    seen.add((name, depth))
    for source, offset, min_depth in links.get(name, ()):
      if depth is None or depth >= min_depth:
        d = None if depth is None or offset is None or depth + offset > _MAX_DEPTH else depth + offset
        stack.append((source, d))
  return {name for name, _ in seen}
