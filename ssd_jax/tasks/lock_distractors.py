"""Lock distractors: one-token slips at the built-in task's lock positions, the pre-training corpus's tail.

At a lock only one continuation is right (see `families`). A corpus in which a small share of otherwise correct
answers slips at exactly one lock leaves the pre-trained model with a low-probability distractor tail there,
which is the tail truncated sampling (and SSD) is meant to cut. Every slip breaks the program:

* `colon`: the `def` line loses its closing `:` (a syntax error);
* `name`: the function name in the `def` line gets one wrong letter (the tests cannot find it);
* `return`: the first `return` becomes `retrun` (a syntax error).

Forks are untouched: the slip is applied to one of the problem's known solutions, which stays a valid variant
everywhere else.
"""

from __future__ import annotations

import random
import re

LOCK_KINDS = ("colon", "name", "return")
_DEF_LINE = re.compile(r"^def (\w+)\((.*)\):", re.MULTILINE)


def _wrong_letter(name: str, rng: random.Random) -> str:
  i = rng.randrange(len(name))
  letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c != name[i]]
  return name[:i] + rng.choice(letters) + name[i + 1 :]


def lock_slip(code: str, kind: str, rng: random.Random) -> str:
  """`code` with one slip of `kind` (one of LOCK_KINDS) at its lock.

  Args:
    code: a function definition (`def name(args):` then an indented body with a `return`).
    kind: which lock slips.
    rng: picks the wrong letter for 'name'.

  Raises:
    ValueError: unknown kind, or `code` has no such lock.
  """
  match = _DEF_LINE.search(code)
  if kind not in LOCK_KINDS:
    raise ValueError(f"lock kind must be one of {LOCK_KINDS}, got {kind!r}")
  if match is None or (kind == "return" and "return" not in code):
    raise ValueError(f"code has no {kind!r} lock: {code[:60]!r}")
  if kind == "colon":
    return code[: match.end() - 1] + code[match.end() :]
  if kind == "name":
    name = match.group(1)
    return code[: match.start(1)] + _wrong_letter(name, rng) + code[match.end(1) :]
  return code.replace("return", "retrun", 1)


def random_lock_slip(code: str, rng: random.Random) -> str:
  """One slip at a lock `code` has, chosen uniformly among them."""
  kinds = [k for k in LOCK_KINDS if k != "return" or "return" in code]
  return lock_slip(code, rng.choice(kinds), rng)
