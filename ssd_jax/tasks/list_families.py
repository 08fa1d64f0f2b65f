"""Families over lists of integers: sum of the multiples in a list, filter, extreme, the multiples up to n.

Each generator takes a `random.Random` and returns a `Draft`; expected test values come from plain
Python written independently of the solution strings.
"""

from __future__ import annotations

import random

from ssd_jax.tasks.families import INDENT, Draft, Family, function

_LIST_ARGS = ("xs", "nums", "values", "items")
# divisible_list's (a, b): in order, since `by 3 or by 5` and `by 5 or by 3` are one program, and b not a multiple
# of a, where `by 2 or by 4` is `by 2` (b would change nothing and need not be copied).
_DIVISOR_PAIRS = tuple((a, b) for a in range(2, 10) for b in range(a + 1, 10) if b % a)


def _ints(rng: random.Random, low: int, high: int, size: int) -> list[int]:
  return [rng.randint(low, high) for _ in range(size)]


def sum_multiples(rng: random.Random) -> Draft:
  """Medium (copies k): sum the elements divisible by k. Forks: loop, generator, list comprehension, filter."""
  name = rng.choice(
    (
      "sum_multiples",
      "total_divisible",
      "add_multiples",
      "sum_divisible",
      "multiple_total",
      "divisible_sum",
      "collect_multiples",
      "sum_if_divisible",
    )
  )
  xs, k = rng.choice(_LIST_ARGS), rng.randint(2, 7)
  question = rng.choice(
    (
      f"Write a function `{name}({xs})` that returns the sum of the numbers in the list {xs} that are divisible "
      f"by {k}.",
      f"Define `{name}({xs})` returning the total of the multiples of {k} in the list {xs}.",
      f"Implement `{name}({xs})`: add up the elements v of {xs} with v % {k} == 0 and return the sum.",
    )
  )
  solutions = (
    function(
      name,
      xs,
      "total = 0",
      f"for v in {xs}:",
      f"{INDENT}if v % {k} == 0:",
      f"{INDENT}{INDENT}total += v",
      "return total",
    ),
    function(name, xs, f"return sum(v for v in {xs} if v % {k} == 0)"),
    function(name, xs, f"return sum([v for v in {xs} if v % {k} == 0])"),
    function(name, xs, f"return sum(filter(lambda v: v % {k} == 0, {xs}))"),
  )
  wrong = (
    function(name, xs, f"return sum(v for v in {xs} if v % {k} != 0)"),
    function(name, xs, f"return sum(v for v in {xs} if v % {k} == 1)"),
  )
  # A lone multiple makes both wrong filters return 0; k - 1 and k + 1 fail a divisor copied off by one, and a
  # multiple other than k fails `v == k`.
  lists = (
    [k * rng.randint(1, 5)],
    [k * rng.randint(2, 5), k + 1, k - 1, *_ints(rng, 0, 30, 2)],
    _ints(rng, 0, 30, 5),
    [],
  )
  cases = tuple(((lst,), sum(v for v in lst if v % k == 0)) for lst in lists)
  return Draft(question, name, cases, solutions, wrong)


def filter_greater(rng: random.Random) -> Draft:
  """Medium (copies t): keep elements above (or below) t in order. Forks: comprehension, append loop, filter."""
  xs, t = rng.choice(_LIST_ARGS), rng.randint(-5, 20)
  above = rng.random() < 0.5
  op, word = (">", "greater") if above else ("<", "less")
  name = rng.choice(
    ("keep_above", "above", "filter_big", "larger_than")
    if above
    else ("keep_below", "below", "filter_small", "smaller_than")
  )
  question = f"Write a function `{name}({xs})` that returns a list of the numbers in {xs} {word} than {t}, in order."
  solutions = (
    function(name, xs, f"return [v for v in {xs} if v {op} {t}]"),
    function(
      name, xs, "out = []", f"for v in {xs}:", f"{INDENT}if v {op} {t}:", f"{INDENT}{INDENT}out.append(v)", "return out"
    ),
    function(name, xs, f"return list(filter(lambda v: v {op} {t}, {xs}))"),
  )
  wrong = (
    function(name, xs, f"return [v for v in {xs} if v {op}= {t}]"),
    function(name, xs, f"return sorted(v for v in {xs} if v {op} {t})"),
  )
  keep = (lambda v: v > t) if above else (lambda v: v < t)
  # Holds t and its neighbours (so `>=` or a t copied off by one fails) and keepers out of order (so sorting fails).
  mixed = [t + 9, t, t - 1, t + 1, t - 4, t + 2, t - 7] if above else [t - 2, t, t + 1, t - 1, t + 4, t - 9, t + 7]
  lists = (mixed, _ints(rng, t - 10, t + 10, 5), [])
  cases = tuple(((lst,), [v for v in lst if keep(v)]) for lst in lists)
  return Draft(question, name, cases, solutions, wrong)


def extreme(rng: random.Random) -> Draft:
  """Medium (copies d): the largest (smallest) element, or d for an empty list. Forks: default=, a guard, a loop, sorted."""
  xs = rng.choice(_LIST_ARGS)
  largest = rng.random() < 0.5
  word, builtin, cmp, pick = ("largest", "max", ">", -1) if largest else ("smallest", "min", "<", 0)
  d = rng.randint(0, 9) if largest else -rng.randint(0, 9)
  name = rng.choice(
    ("largest", "biggest", "top_value", "maximum", "peak")
    if largest
    else ("smallest", "lowest", "bottom_value", "minimum", "floor_value")
  )
  question = rng.choice(
    (
      f"Write a function `{name}({xs})` that returns the {word} number in the list {xs}, or {d} if it is empty.",
      f"Define `{name}({xs})` returning the {word} element of {xs} ({d} for an empty list).",
    )
  )
  guard = (f"if not {xs}:", f"{INDENT}return {d}")
  solutions = (
    function(name, xs, f"return {builtin}({xs}, default={d})"),
    function(name, xs, f"return {builtin}({xs}) if {xs} else {d}"),
    function(
      name,
      xs,
      *guard,
      f"best = {xs}[0]",
      f"for v in {xs}:",
      f"{INDENT}if v {cmp} best:",
      f"{INDENT}{INDENT}best = v",
      "return best",
    ),
    function(name, xs, *guard, f"return sorted({xs})[{pick}]"),
  )
  wrong = (
    function(name, xs, f"return {builtin}({xs} + [{d}])"),
    function(
      name,
      xs,
      *guard,
      "best = 0",
      f"for v in {xs}:",
      f"{INDENT}if v {cmp} best:",
      f"{INDENT}{INDENT}best = v",
      "return best",
    ),
    function(name, xs, *guard, f"return sorted({xs})[{-1 - pick}]"),
  )
  sign = -1 if largest else 1  # All below d for max (above d for min) catches both ways of mixing d in.
  # A single element, so a loop that starts from the second one fails.
  lists = (
    [sign * rng.randint(10, 20) for _ in range(4)],
    [3, 17, -4, 8],
    _ints(rng, -20, 20, 6),
    [rng.randint(-20, 20)],
    [],
  )
  cases = tuple(((lst,), (max if largest else min)(lst, default=d)) for lst in lists)
  return Draft(question, name, cases, solutions, wrong)


def divisible_list(rng: random.Random) -> Draft:
  """Hard (copies a and b): list 1..n divisible by a or b. Forks: comprehension, append loop, filter over a range."""
  n = rng.choice(("n", "limit", "top", "stop"))
  a, b = rng.choice(_DIVISOR_PAIRS)
  name = rng.choice(("multiples_of", "divisible_upto", "pick_multiples", "either_multiple", "list_multiples"))
  question = (
    f"Write a function `{name}({n})` that returns a list of the integers from 1 to {n} inclusive that are "
    f"divisible by {a} or by {b}."
  )
  cond = f"i % {a} == 0 or i % {b} == 0"
  solutions = (
    function(name, n, f"return [i for i in range(1, {n} + 1) if {cond}]"),
    function(
      name,
      n,
      "out = []",
      f"for i in range(1, {n} + 1):",
      f"{INDENT}if {cond}:",
      f"{INDENT}{INDENT}out.append(i)",
      "return out",
    ),
    function(name, n, f"return list(filter(lambda i: {cond}, range(1, {n} + 1)))"),
  )
  wrong = (
    function(name, n, f"return [i for i in range(1, {n} + 1) if i % {a} == 0 and i % {b} == 0]"),
    function(name, n, f"return [i for i in range(1, {n}) if {cond}]"),
    function(name, n, f"return [i for i in range({n} + 1) if {cond}]"),
  )
  # A stop just below a multiple of b, so a range that runs one past the stop fails.
  stops = (a * rng.randint(1, 3), b * rng.randint(1, 3) - 1, rng.randint(0, 30), a * b + rng.randint(0, 5))
  cases = tuple(((m,), [i for i in range(1, m + 1) if i % a == 0 or i % b == 0]) for m in stops)
  return Draft(question, name, cases, solutions, wrong)


FAMILIES = (
  Family("sum_multiples", "medium", sum_multiples),
  Family("filter_greater", "medium", filter_greater),
  Family("extreme", "medium", extreme),
  Family("divisible_list", "hard", divisible_list),
)
