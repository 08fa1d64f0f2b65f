"""Families over strings: reverse, wrap, count a character.

Each generator takes a `random.Random` and returns a `Draft`; expected test values come from plain
Python written independently of the solution strings.
"""

from __future__ import annotations

import random
import string

from ssd_jax.tasks.families import INDENT, Draft, Family, function

_STR_ARGS = ("s", "text", "word", "line", "chars")


def _word(rng: random.Random, alphabet: str, low: int, high: int) -> str:
  return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def reverse(rng: random.Random) -> Draft:
  """Easy (copies nothing): reverse a string, maybe upper-casing it. Forks: slicing, reversed + join, a loop, upper first or last."""
  name = rng.choice(
    ("reverse", "reverse_text", "backwards", "mirror", "flip", "reversed_copy", "invert", "turn_around")
  )
  s, upper = rng.choice(_STR_ARGS), rng.random() < 0.5
  what = f"the string {s} reversed" + (" and in upper case" if upper else "")
  question = rng.choice(
    (
      f"Write a function `{name}({s})` that returns {what}.",
      f"Define `{name}({s})` returning {what}.",
      f"Implement `{name}({s})`: it returns {what}.",
    )
  )
  up = ".upper()" if upper else ""
  solutions = [
    function(name, s, f"return {s}[::-1]{up}"),
    function(name, s, f"return ''.join(reversed({s})){up}"),
    function(name, s, "out = ''", f"for ch in {s}{up}:", f"{INDENT}out = ch + out", "return out"),
  ]
  if upper:
    solutions.append(function(name, s, f"return {s}.upper()[::-1]"))
  wrong = (function(name, s, f"return {s}[:-1][::-1]{up}"), function(name, s, f"return {s}[::-1][1:]{up}"))
  words = ["", *(_word(rng, string.ascii_lowercase, 2, 7) for _ in range(3))]
  cases = tuple(((w,), "".join(reversed(w.upper() if upper else w))) for w in words)
  return Draft(question, name, cases, tuple(solutions), wrong)


def wrap(rng: random.Random) -> Draft:
  """Hard (copies two marks): add a prefix and a suffix. Forks: concatenation, f-string, join, format."""
  name = rng.choice(("wrap", "decorate", "surround", "enclose", "frame", "add_marks", "bracket"))
  s, pre, suf = (
    rng.choice(_STR_ARGS),
    rng.choice(("<", "[", "(", "**", "#", "ab", "x")),
    rng.choice(("!", ">", "]", ")", "?", "..", "yz")),
  )
  question = rng.choice(
    (
      f"Write a function `{name}({s})` that returns {s} with '{pre}' added in front and '{suf}' added at the end.",
      f"Define `{name}({s})` returning '{pre}' + {s} + '{suf}'.",
    )
  )
  solutions = (
    function(name, s, f"return '{pre}' + {s} + '{suf}'"),
    function(name, s, f"return f'{pre}{{{s}}}{suf}'"),
    function(name, s, f"return ''.join(['{pre}', {s}, '{suf}'])"),
    function(name, s, f"return '{pre}{{}}{suf}'.format({s})"),
  )
  wrong = (function(name, s, f"return '{suf}' + {s} + '{pre}'"), function(name, s, f"return {s} + '{pre}{suf}'"))
  # Letters that share nothing with the marks, so `s + pre + suf` never equals `pre + s + suf` by accident.
  words = (_word(rng, "cdefghijklmnopqrstuvw", 1, 6), _word(rng, "cdefghijklmnopqrstuvw", 1, 6), "")
  cases = tuple(((w,), pre + w + suf) for w in words)
  return Draft(question, name, cases, solutions, wrong)


def count_char(rng: random.Random) -> Draft:
  """Medium (copies the character): count one character. Forks: str.count, a generator sum, a loop, a filtered list's length."""
  name = rng.choice(("count_char", "occurrences", "how_many", "tally", "char_count", "count_letter"))
  s, c = rng.choice(_STR_ARGS), rng.choice("abcdeklmorstz")
  question = rng.choice(
    (
      f"Write a function `{name}({s})` that returns how many times the character '{c}' appears in {s}.",
      f"Define `{name}({s})` returning the number of '{c}' characters in the string {s}.",
    )
  )
  solutions = (
    function(name, s, f"return {s}.count('{c}')"),
    function(name, s, f"return sum(1 for ch in {s} if ch == '{c}')"),
    function(
      name, s, "count = 0", f"for ch in {s}:", f"{INDENT}if ch == '{c}':", f"{INDENT}{INDENT}count += 1", "return count"
    ),
    function(name, s, f"return len([ch for ch in {s} if ch == '{c}'])"),
  )
  wrong = (
    function(name, s, f"return sum(1 for ch in {s} if ch != '{c}')"),
    function(name, s, f"return int('{c}' in {s})"),
  )
  others = "".join(ch for ch in "abcdefghij" if ch != c)[:3]
  # The letters next to c (one below, one above), so an ordering comparison or a neighbouring letter fails.
  near = "".join(chr(ord(c) + step) for step in (-1, 1) if "a" <= chr(ord(c) + step) <= "z")
  words = (
    c + _word(rng, others, 1, 4) + c,
    near + _word(rng, others, 0, 3),
    c * 3 + _word(rng, others, 0, 2),
  )
  cases = tuple(((w,), w.count(c)) for w in words)
  return Draft(question, name, cases, solutions, wrong)


FAMILIES = (
  Family("reverse", "easy", reverse),
  Family("wrap", "hard", wrap),
  Family("count_char", "medium", count_char),
)
