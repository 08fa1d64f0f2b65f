"""Families over integers: an affine map, conditionals (distance, clamp) and loops (range sums, products, digits).

Each generator takes a `random.Random` and returns a `Draft`; expected test values come from plain
Python written independently of the solution strings, so a solution that disagrees fails its asserts.
"""

from __future__ import annotations

import math
import random

from ssd_jax.tasks.families import INDENT, Draft, Family, function, unique

_INT_ARGS = ("x", "n", "value", "num")
_COUNT_ARGS = ("n", "limit", "top", "k")


def affine(rng: random.Random) -> Draft:
  """Hard (copies a and b): a * x + b. Forks: operand order, a temporary, x + x for a = 2."""
  name = rng.choice(("scale", "transform", "compute", "apply", "affine", "linear", "adjust", "convert", "step"))
  x, a, b = rng.choice(_INT_ARGS), rng.randint(2, 9), rng.randint(1, 20)
  question = rng.choice(
    (
      f"Write a function `{name}({x})` that returns {a} * {x} + {b}.",
      f"Write a function `{name}({x})` that multiplies {x} by {a} and then adds {b}.",
      f"Define `{name}({x})` returning {b} more than {a} times {x}.",
    )
  )
  solutions = [
    function(name, x, f"return {a} * {x} + {b}"),
    function(name, x, f"return {b} + {a} * {x}"),
    function(name, x, f"return {x} * {a} + {b}"),
    function(name, x, f"result = {a} * {x}", f"return result + {b}"),
  ]
  if a == 2:
    solutions.append(function(name, x, f"return {x} + {x} + {b}"))
  wrong = (function(name, x, f"return {a} * ({x} + {b})"), function(name, x, f"return {a} * {x} + {b + 1}"))
  cases = tuple(((v,), a * v + b) for v in rng.sample(range(-10, 30), 4))
  return Draft(question, name, cases, unique(solutions), wrong)


def distance(rng: random.Random) -> Draft:
  """Medium (copies c): |x - c|. Forks: abs either way round, if/else, conditional expression, max."""
  name = rng.choice(("distance", "gap", "how_far", "diff_from", "abs_diff", "separation", "offset"))
  x, c = rng.choice(_INT_ARGS), rng.randint(1, 30)
  question = rng.choice(
    (
      f"Write a function `{name}({x})` that returns the absolute value of {x} - {c}.",
      f"Write a function `{name}({x})` that returns how far {x} is from {c} (never negative).",
      f"Define `{name}({x})` returning the distance between {x} and {c} on the number line.",
    )
  )
  solutions = (
    function(name, x, f"return abs({x} - {c})"),
    function(name, x, f"return abs({c} - {x})"),
    function(name, x, f"if {x} >= {c}:", f"{INDENT}return {x} - {c}", f"return {c} - {x}"),
    function(name, x, f"return {x} - {c} if {x} > {c} else {c} - {x}"),
    function(name, x, f"return max({x} - {c}, {c} - {x})"),
  )
  wrong = (
    function(name, x, f"return {x} - {c}"),
    function(name, x, f"return abs({x}) - {c}"),
    function(name, x, f"return abs({x} + {c})"),
  )
  # c - 1 and c + 1 catch a comparison with c off by one in the if/else and conditional forks.
  values = (c - 1, c + 1, c, c + rng.randint(2, 15), -rng.randint(1, 15))
  cases = tuple(((v,), abs(v - c)) for v in values)
  return Draft(question, name, cases, solutions, wrong)


def clamp(rng: random.Random) -> Draft:
  """Hard (copies lo and hi): clamp x into [lo, hi]. Forks: if/elif/else, max-of-min either way, nested conditional."""
  name = rng.choice(("clamp", "limit", "bound", "restrict", "clip", "keep_in_range", "saturate"))
  x, lo = rng.choice(_INT_ARGS), rng.randint(-10, 10)
  hi = lo + rng.randint(3, 20)
  question = rng.choice(
    (
      f"Write a function `{name}({x})` that returns {x} clamped to the range {lo} to {hi}.",
      f"Write a function `{name}({x})` that returns {lo} if {x} is below {lo}, {hi} if {x} is above {hi}, "
      f"and {x} otherwise.",
      f"Define `{name}({x})` that forces {x} into the interval [{lo}, {hi}].",
    )
  )
  solutions = (
    function(
      name,
      x,
      f"if {x} < {lo}:",
      f"{INDENT}return {lo}",
      f"elif {x} > {hi}:",
      f"{INDENT}return {hi}",
      "else:",
      f"{INDENT}return {x}",
    ),
    function(name, x, f"return max({lo}, min({x}, {hi}))"),
    function(name, x, f"return min(max({x}, {lo}), {hi})"),
    function(name, x, f"return {lo} if {x} < {lo} else {hi} if {x} > {hi} else {x}"),
  )
  wrong = (
    function(name, x, f"return min({lo}, max({x}, {hi}))"),
    function(name, x, f"return max({lo}, min({x}, {hi - 1}))"),
  )
  # Just outside each bound, so a bound copied off by one fails.
  values = (lo - 1, hi + 1, rng.randint(lo + 1, hi - 1), lo, hi)
  cases = tuple(((v,), min(max(v, lo), hi)) for v in values)
  return Draft(question, name, cases, solutions, wrong)


def range_sum(rng: random.Random) -> Draft:
  """Medium (copies s): sum of i (or i squared) for i from s to n, 0 when n < s. Forks: for, while, sum(range), formula."""
  power, s, n = rng.choice((1, 2)), rng.randint(1, 9), rng.choice(_COUNT_ARGS)
  term, what = ("i", "integers") if power == 1 else ("i * i", "squares of the integers")
  name = rng.choice(
    ("range_sum", "series_sum", "sum_between", "accumulate", "total_from")
    if power == 1
    else ("sum_squares", "square_total", "squares_sum", "add_squares")
  )
  question = rng.choice(
    (
      f"Write a function `{name}({n})` that returns the sum of the {what} from {s} to {n} inclusive "
      f"(0 when {n} < {s}).",
      f"Define `{name}({n})` returning the total of the {what} {s}, {s + 1}, ..., {n}, or 0 if {n} is less than {s}.",
    )
  )
  solutions = [
    function(name, n, "total = 0", f"for i in range({s}, {n} + 1):", f"{INDENT}total += {term}", "return total"),
    function(
      name, n, f"return sum({term} for i in range({s}, {n} + 1))" if power == 2 else f"return sum(range({s}, {n} + 1))"
    ),
    function(
      name,
      n,
      "total = 0",
      f"i = {s}",
      f"while i <= {n}:",
      f"{INDENT}total += {term}",
      f"{INDENT}i += 1",
      "return total",
    ),
  ]
  if power == 1 and s == 1:
    # Guarded: the bare formula is positive for n < -1, where the sum is empty.
    solutions.append(function(name, n, f"return {n} * ({n} + 1) // 2 if {n} >= 1 else 0"))
  wrong = (
    function(name, n, "total = 0", f"for i in range({s}, {n}):", f"{INDENT}total += {term}", "return total"),
    function(name, n, "total = 0", f"for i in range({s + 1}, {n} + 1):", f"{INDENT}total += {term}", "return total"),
  )
  # One stop below s, where the sum is empty (0).
  stops = (s - rng.randint(1, 3), s, s + rng.randint(1, 5), s + rng.randint(6, 15))
  cases = tuple(((m,), sum(i**power for i in range(s, m + 1))) for m in stops)
  return Draft(question, name, cases, unique(solutions), wrong)


def product(rng: random.Random) -> Draft:
  """Medium (copies s): product of the integers from s to n (1 when n < s). Forks: for, while, recursion, math.prod."""
  # s = 1 would be one function (so one problem) with s = 2, under another statement and maybe another split.
  s, n = rng.randint(2, 7), rng.choice(_COUNT_ARGS)
  name = rng.choice(
    (
      "product_from",
      "range_product",
      "multiply_up",
      "rising_product",
      "chain_product",
      "product_upto",
      "multiply_range",
      "prod_between",
    )
  )
  question = rng.choice(
    (
      f"Write a function `{name}({n})` that returns the product of the integers from {s} to {n} inclusive, "
      f"or 1 if {n} is less than {s}.",
      f"Define `{name}({n})` returning {s} * {s + 1} * ... * {n} (1 when {n} < {s}).",
    )
  )
  solutions = (
    function(name, n, "result = 1", f"for i in range({s}, {n} + 1):", f"{INDENT}result *= i", "return result"),
    function(name, n, "import math", f"return math.prod(range({s}, {n} + 1))"),
    function(name, n, f"if {n} < {s}:", f"{INDENT}return 1", f"return {n} * {name}({n} - 1)"),
    function(
      name, n, "result = 1", f"while {n} >= {s}:", f"{INDENT}result *= {n}", f"{INDENT}{n} -= 1", "return result"
    ),
  )
  wrong = (
    function(name, n, "result = 1", f"for i in range({s}, {n}):", f"{INDENT}result *= i", "return result"),
    function(name, n, "result = 0", f"for i in range({s}, {n} + 1):", f"{INDENT}result *= i", "return result"),
  )
  stops = (s - 1, s + 1, s + rng.randint(2, 6))
  cases = tuple(((m,), math.prod(range(s, m + 1))) for m in stops)
  return Draft(question, name, cases, solutions, wrong)


def digits(rng: random.Random) -> Draft:
  """Easy (copies nothing, or the digit d): digit sum, or count of digits above d. Forks: str and generator, map, a % 10 loop."""
  n = rng.choice(_COUNT_ARGS)
  # A large leading digit (so dropping it fails) and a few more; the digit sum adds a leading 1 (so a loop that
  # stops at 1 fails), the count one holding d.
  values = (int(f"9{rng.randint(1, 7)}{rng.randint(0, 9)}"), rng.randint(10, 99), rng.randint(1000, 99999))
  if rng.random() < 0.5:
    name = rng.choice(
      (
        "digit_sum",
        "sum_digits",
        "add_digits",
        "digit_total",
        "cross_sum",
        "digits_added",
        "total_of_digits",
        "sum_of_digits",
      )
    )
    question = rng.choice(
      (
        f"Write a function `{name}({n})` that returns the sum of the decimal digits of the integer {n} >= 0.",
        f"Define `{name}({n})` returning the total of the digits of the non-negative integer {n}.",
      )
    )
    solutions = (
      function(name, n, f"return sum(int(ch) for ch in str({n}))"),
      function(name, n, f"return sum(map(int, str({n})))"),
      function(
        name, n, "total = 0", f"while {n} > 0:", f"{INDENT}total += {n} % 10", f"{INDENT}{n} //= 10", "return total"
      ),
    )
    wrong = (
      function(
        name, n, "total = 0", f"while {n} > 9:", f"{INDENT}total += {n} % 10", f"{INDENT}{n} //= 10", "return total"
      ),
      function(name, n, f"return sum(int(ch) for ch in str({n})[1:])"),
    )
    referee = lambda m: sum(int(ch) for ch in str(m))
    values += (rng.randint(100, 199),)
  else:
    d = rng.randint(1, 7)
    name = rng.choice(
      ("count_big_digits", "digits_above", "large_digits", "count_digits_over", "big_digit_count", "digits_over")
    )
    question = rng.choice(
      (
        f"Write a function `{name}({n})` that returns how many decimal digits of the integer {n} >= 0 exceed {d}.",
        f"Define `{name}({n})` returning the number of digits of the non-negative integer {n} that are above {d}.",
      )
    )
    solutions = (
      function(name, n, f"return sum(1 for ch in str({n}) if int(ch) > {d})"),
      function(name, n, f"return len([ch for ch in str({n}) if int(ch) > {d}])"),
      function(
        name,
        n,
        "count = 0",
        f"for ch in str({n}):",
        f"{INDENT}if int(ch) > {d}:",
        f"{INDENT}{INDENT}count += 1",
        "return count",
      ),
    )
    wrong = (
      function(name, n, f"return sum(1 for ch in str({n}) if int(ch) >= {d})"),
      function(name, n, f"return sum(1 for ch in str({n}) if int(ch) < {d})"),
    )
    referee = lambda m: sum(int(ch) > d for ch in str(m))
    # One holds the digits d, d + 1 and 0 (so `>= d`, `> d + 1` and `!= d` fail), one only nines (so `<` fails).
    values += (int(f"{d}{d + 1}0"), int("9" * rng.randint(2, 4)))
  cases = tuple(((v,), referee(v)) for v in values)
  return Draft(question, name, cases, solutions, wrong)


FAMILIES = (
  Family("affine", "hard", affine),
  Family("distance", "medium", distance),
  Family("clamp", "hard", clamp),
  Family("range_sum", "medium", range_sum),
  Family("product", "medium", product),
  Family("digits", "easy", digits),
)
