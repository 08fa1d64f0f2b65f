"""Which objects a piece of code changes in place, and which names' objects that reaches (`object_links`).

Changed in place: stores into items and attributes, augmented assignments that may work in place, mutating
methods (`xs.sort()`) and library functions (`heapq.heappush(h, v)`) and names bound to them (`add =
seen.add`), and calls of the program's methods that change `self` or of its code that changes its arguments.
Each change is a site `(name, depth)`: the name's object changes at that depth (None: at some depth), and
`reached` follows the names' links to every object it may change.
"""

from __future__ import annotations

import ast
import collections
from collections.abc import Mapping

from ssd_jax.data.code_names import BUILTIN_NAMES
from ssd_jax.evals.object_links import (
  NOTHING_KNOWN,
  REBINDING_OPS,
  Known,
  call_values,
  function_name,
  sources,
  walk,
)

# Methods that change the object they are called on (`xs.sort()`, `d.update(...)`).
MUTATORS = set(
  "append extend insert pop remove clear sort reverse update add discard setdefault popitem appendleft extendleft "
  "popleft rotate difference_update intersection_update symmetric_difference_update subtract move_to_end "
  "__setitem__ __delitem__ __iadd__ __isub__ __imul__ __ior__ __iand__ __ixor__".split()
)
# Library functions that change their first argument in place (`heapq.heapify(h)`, `operator.iadd(xs, ys)`).
MUTATING_FUNCTIONS = set(
  "heappush heappop heapify heapreplace heappushpop shuffle insort insort_left insort_right setitem delitem "
  "iadd iconcat ior iand ixor isub imul imatmul ifloordiv itruediv imod ipow ilshift irshift".split()
)
_MAX_DEPTH = 4  # Deeper is "some depth".
_NUMBER_RESULTS = {"len", "abs", "int", "float", "round", "ord", "hash", "id", "bool", "complex", "pow"}


def _changed(node: ast.AST, known: Known, depth: int | None = 0) -> list[tuple[str, int | None]]:
  """[(name, depth)] changed when the object `node` evaluates to changes at `depth` (None: some depth)."""
  return [
    (n, None if depth is None or o is None else depth + o)
    for n, o, m in sources(node, known)
    if depth is None or depth >= m
  ]


def mutator_aliases(root: ast.AST) -> tuple[dict[str, ast.AST], set[str]]:
  """({name: the object it changes}, names of functions that change their first argument) of the names bound to
  a mutating method (`add = seen.add`) or library function (`push = heapq.heappush`, `from heapq import
  heappush as push`) under `root`."""
  bound, first_argument = {}, set()
  for n in ast.walk(root):
    if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
      name, value = n.targets[0].id, n.value
      if isinstance(value, ast.Attribute) and value.attr in MUTATORS:
        bound[name] = value.value
      elif (
        isinstance(value, (ast.Attribute, ast.Name))
        and (value.attr if isinstance(value, ast.Attribute) else value.id) in MUTATING_FUNCTIONS
      ):
        first_argument.add(name)
    elif isinstance(n, ast.ImportFrom):
      first_argument |= {a.asname for a in n.names if a.asname and a.name in MUTATING_FUNCTIONS}
  return bound, first_argument


def change_sites(root: ast.AST, into_functions: bool, known: Known = NOTHING_KNOWN, aliases=None) -> list:
  """[(name, depth)] of the objects the code under `root` changes in place: stores into items and attributes,
  augmented assignments that may work in place, mutating methods and library functions (and names bound to
  them), and calls of the program's methods that change `self` or of its code that changes its arguments.
  `aliases` (`mutator_aliases` of the whole program) stand for those found under `root`."""
  sites = []
  aliases, first_argument = mutator_aliases(root) if aliases is None else aliases
  for n in walk(root, into_functions):
    targets = list(n.targets) if isinstance(n, (ast.Assign, ast.Delete)) else []
    targets = [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else targets
    while targets:
      t = targets.pop()
      if isinstance(t, (ast.Tuple, ast.List, ast.Starred)):
        targets.extend(t.elts if not isinstance(t, ast.Starred) else [t.value])
      elif isinstance(t, (ast.Attribute, ast.Subscript)):
        sites += _changed(t.value, known)
    if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name) and _in_place(n):
      sites.append((n.target.id, 0))
    if isinstance(n, ast.Call):
      sites += _call_sites(n, known, aliases, first_argument)
  return sites


def _in_place(node: ast.AugAssign) -> bool:
  """Whether `x op= v` may change x's object in place (a list's `+=` of any iterable, a set's `|=`), not only
  rebind x: not for the operators Python's containers lack, nor a number `v` (`count += 1`, `n -= len(xs)`)."""
  value = node.value
  if isinstance(node.op, REBINDING_OPS) or isinstance(value, (ast.UnaryOp, ast.Compare)):
    return False
  number = isinstance(value, ast.Constant) and isinstance(value.value, (int, float, complex))
  number |= isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in _NUMBER_RESULTS
  return not number or isinstance(node.op, ast.Mult)  # `xs *= 2` repeats a list in place


def _call_sites(n: ast.Call, known: Known, aliases, first_argument) -> list:
  sites = []
  name = function_name(n)
  receiver = n.func.value if isinstance(n.func, ast.Attribute) else None
  if receiver is not None and name in MUTATORS:
    sites += _changed(receiver, known)
  if receiver is not None and name in known.method_writers:
    sites += _changed(receiver, known, None)
  if isinstance(n.func, ast.Name) and name in aliases:  # `add = seen.add; add(x)`
    sites += _changed(aliases[name], known)
  # `list.sort(xs)`, `dict.update(d, ...)`: a method called through its class changes its first argument.
  unbound = isinstance(receiver, ast.Name) and receiver.id in BUILTIN_NAMES | known.imported and name in MUTATORS
  if n.args and (unbound or name in MUTATING_FUNCTIONS or isinstance(n.func, ast.Name) and name in first_argument):
    sites += _changed(n.args[0], known)
  if name in known.argument_writers:
    sites += [site for a in call_values(n) for site in _changed(a, known, None)]
  return sites


def call_effects(root: ast.AST, known: Known) -> dict[str, tuple[list, list]]:
  """{callee name: (sites of the objects its calls under `root` are given, sites of the objects they are called
  on)}, at some depth: what a call changes if its callee changes its arguments, or `self`."""
  found = collections.defaultdict(lambda: ([], []))
  for n in ast.walk(root):
    if isinstance(n, ast.Call) and (name := function_name(n)) in known.returns:  # Only the program's code.
      given, receivers = found[name]
      given += [site for a in call_values(n) for site in _changed(a, known, None)]
      receivers += _changed(n.func.value, known, None) if isinstance(n.func, ast.Attribute) else []
  return dict(found)


def reached(links: Mapping[str, list], sites, seen: set | None = None) -> set[str]:
  """The names whose objects changing `sites` ([(name, depth)]) may change, following `links`.

  `seen` (states (name, depth) already followed) lets a caller add sites to an earlier search: only the new
  states are followed, and the names of every state seen are returned.
  """
  seen = set() if seen is None else seen
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
