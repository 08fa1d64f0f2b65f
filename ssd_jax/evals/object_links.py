"""Which objects a Python name may stand for: the links its bindings make (`object_changes` follows them).

Found syntactically, leaning towards "may": `usage_code` keeps a usage statement that may change what the
solution reads, so over-counting splits two copies of one solution, never merges two solutions.

A link from a name to a source name is `(source, offset, min_depth)`: changing the name's object at depth
`d >= min_depth` (0: the object itself, 1: one of its items or attributes, ...) may change the source's object at
depth `d + offset` (`None`: at some depth). `h = G` links h to G by (0, 0); `row = G[i]` by (1, 0): row is an item
of G; `res = [G]` by (-1, 1): changing the list itself leaves G alone, changing its item changes G; `copy =
G[:]` by (0, 1): the copy shares G's items. A value that holds nothing (`len(G)`, `[0] * n`, a comparison)
links to nothing; a call links its result to everything it is given, at any depth, and a call of the program's
own code also to the module names that code may return (`get()` may return G).
"""

from __future__ import annotations

import ast
import collections
import dataclasses
from collections.abc import Mapping

from ssd_jax.data.code_names import BUILTIN_NAMES
from ssd_jax.evals.name_reads import free_reads

_STORE_ITEM = {"append", "appendleft", "add", "insert", "setdefault", "__setitem__"}  # Their arguments become items.
_STORE_ITEMS = {"extend", "extendleft", "update", "__iadd__", "__ior__"}  # Their argument's items become items.
# Builtins, and methods of strings and numbers, whose result holds none of their arguments' objects.
_FRESH_RESULTS = set(
  "len abs int float complex str bool bytes repr ascii ord chr hash id isinstance issubclass callable round pow "
  "divmod hex bin oct format range all any".split()
)
_FRESH_METHODS = set(
  "split rsplit splitlines strip lstrip rstrip lower upper title capitalize swapcase casefold join replace count "
  "index find rfind rindex startswith endswith isdigit isalpha isalnum isspace islower isupper isnumeric "
  "isdecimal zfill center ljust rjust encode decode bit_length bit_count is_integer".split()
)
# Calls whose result is a new object sharing items with their arguments (a shallow copy, an iterator, a view).
_COPIES = set(
  "list tuple set frozenset dict sorted reversed enumerate zip map filter iter copy Counter defaultdict deque "
  "OrderedDict nsmallest nlargest keys values items".split()
)
# In-place only for numpy arrays and the like: on Python's numbers, strings and containers they rebind.
REBINDING_OPS = (ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift, ast.MatMult)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclasses.dataclass(frozen=True)
class Known:
  """What the rules know of the program's own code.

  Attributes:
    returns: name of each top-level function, class and method -> the module names a call of it may return (or,
      a class, its instance hold).
    method_writers: names of methods that may change the object they are called on.
    argument_writers: names of functions, classes and methods that may change an object passed to them.
    imported: names the program's imports bind (`deque.append(d, x)` changes d, as `list.append(xs, x)` does).
  """

  returns: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
  imported: frozenset[str] = frozenset()
  method_writers: frozenset[str] = frozenset()
  argument_writers: frozenset[str] = frozenset()


NOTHING_KNOWN = Known()


def function_name(call: ast.Call) -> str | None:
  """`f` of `f(...)` and of `obj.f(...)`."""
  return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def call_values(call: ast.Call) -> tuple[ast.expr, ...]:
  """The expressions a call passes: positional (a `*xs` as it is written) and keyword values."""
  return (*call.args, *(k.value for k in call.keywords))


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


def _shared_items(links):
  """Links of a new container holding the items of the linked value (`[*xs]`, `list(xs)`, `a + b`)."""
  return [(n, o, max(1, m)) for n, o, m in links]


def _anything(node: ast.AST) -> list:
  return [(n.id, None, 0) for n in ast.walk(node) if isinstance(n, ast.Name)]


def sources(node: ast.AST | None, known: Known = NOTHING_KNOWN) -> list[tuple[str, int | None, int]]:
  """The links of the value `node` evaluates to (see the module docstring)."""
  if node is None or isinstance(node, (ast.Constant, ast.JoinedStr, ast.Compare, ast.UnaryOp)):
    return []
  if isinstance(node, ast.Name):
    return [(node.id, 0, 0)]
  if isinstance(node, ast.Lambda):  # Calling it returns what its body reads.
    return [(n, None, 0) for n, _, _ in _anything(node.body)]
  if isinstance(node, (ast.Starred, ast.NamedExpr, ast.Await)):
    return sources(node.value, known)
  if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
    return _shared_items(sources(node.value, known))  # A slice: a copy sharing the items.
  if isinstance(node, (ast.Attribute, ast.Subscript)):
    return _shift(sources(node.value, known), 1, -1)  # An item: changing it at d changes the container at d + 1.
  if isinstance(node, ast.IfExp):
    return sources(node.body, known) + sources(node.orelse, known)
  if isinstance(node, ast.BoolOp):
    return [link for v in node.values for link in sources(v, known)]
  if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
    items = [*node.keys, *node.values] if isinstance(node, ast.Dict) else node.elts
    unpacked = (
      [v for k, v in zip(node.keys, node.values, strict=True) if k is None] if isinstance(node, ast.Dict) else []
    )
    links = []
    for e in items:
      if e is None:
        continue
      if isinstance(e, ast.Starred) or any(e is v for v in unpacked):  # `[*xs]`, `{**d}` share xs's, d's items.
        links += _shared_items(sources(e, known))
      else:
        links += _shift(sources(e, known), -1, 1)
    return links
  if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
    parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
    return [link for e in parts for link in _shift(sources(e, known), -1, 1)]  # Loop variables link via bindings.
  if isinstance(node, ast.BinOp):
    if isinstance(node.op, REBINDING_OPS):  # A new number or string (`r * 2 % MOD`, `"%d" % n`).
      return []
    sides = [s for s in (node.left, node.right) if isinstance(s, (ast.List, ast.Tuple))]
    if isinstance(node.op, ast.Mult) and sides:  # `[0] * n`: copies of the literal's items, nothing of n.
      return sources(sides[0], known)
    return [link for s in (node.left, node.right) for link in _shared_items(sources(s, known))]  # `a + b`
  if isinstance(node, ast.Call):
    return _call_sources(node, known)
  return _anything(node)


def _call_sources(node: ast.Call, known: Known) -> list:
  name = function_name(node)
  if name not in known.returns:
    if isinstance(node.func, ast.Name) and name in _FRESH_RESULTS or name == "deepcopy":
      return []
    if isinstance(node.func, ast.Attribute) and name in _FRESH_METHODS:
      return []
  if name == "super" and isinstance(node.func, ast.Name):  # The method's own object (`object_changes`' self).
    return [("super", 0, 0)]
  # `obj.f(...)`: obj; `get()(...)`: what get() returns.
  receiver = [] if isinstance(node.func, ast.Name) else [getattr(node.func, "value", node.func)]
  given = [link for a in (*receiver, *call_values(node)) for link in _anything(a)]
  if isinstance(node.func, ast.Name) and name not in known.returns and name not in BUILTIN_NAMES:
    given.append((name, None, 0))  # A function value (`get = lambda: G`) returns what it reads.
  returned = [(n, None, 0) for n in known.returns.get(name, ())]
  copies = name in _COPIES and name not in known.returns
  return ([(n, None, 1) for n, _, _ in given] if copies else given) + returned


def _target_chain(target: ast.AST) -> tuple[str | None, int | None]:
  """(root, links) of a store target's object `r.a[k]`: a value stored into it becomes r's item at depth
  `links + 1` (`links` None when the chain passes through a call)."""
  links, node = 0, target
  while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
    links = None if isinstance(node, ast.Call) or links is None else links + 1
    node = node.func if isinstance(node, ast.Call) else node.value
  return (node.id if isinstance(node, ast.Name) else None), links


def links_of(root: ast.AST, into_functions: bool, known: Known = NOTHING_KNOWN) -> dict[str, list]:
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
      hold(target.value, value)

  def hold(container, value, items=False):  # `value` (or, items, its items) becomes an item of `container`.
    root, depth = _target_chain(container)
    if root is not None:
      level = None if depth is None else depth if items else depth + 1  # Of the value's object in root's.
      value = _shared_items(value) if items else value
      links[root] += _shift(value, None, 1) if level is None else _shift(value, -level, level)

  for n in walk(root, into_functions):
    if isinstance(n, ast.Assign):
      for t in n.targets:
        bind(t, sources(n.value, known))
    elif isinstance(n, (ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
      bind(n.target, sources(n.value, known))
    elif isinstance(n, ast.AugAssign):  # `xs += ys` shares ys's items.
      bind(n.target, _shared_items(sources(n.value, known)))
    elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
      bind(n.target, sources(n.iter, known), element=True)
    elif isinstance(n, ast.withitem) and n.optional_vars is not None:
      bind(n.optional_vars, sources(n.context_expr, known))
    elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n is not root:  # What calling it may return.
      links[n.name] += [(name, None, 0) for name in free_reads(n)]
    elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
      stores = n.func.attr in _STORE_ITEM | _STORE_ITEMS
      if stores or n.func.attr in known.method_writers:
        given = [link for a in call_values(n) for link in sources(a, known)]
        if stores:
          hold(n.func.value, given, items=n.func.attr in _STORE_ITEMS)
        elif (root := _target_chain(n.func.value)[0]) is not None:  # The method may keep them (`c.use(G)`).
          links[root] += _shift(given, None, 1)
  return links
