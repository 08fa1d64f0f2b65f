"""Problem families of the built-in programming task: the shared types and the registry.

A family is a template for small Python problems: a question with random names and constants, the
function the answer must define, assert tests computed from a plain Python referee, several distinct
correct solutions, and a few subtly wrong ones.

Two properties make the task useful for studying self-distillation:

* **Locks**: positions where only one continuation is right. The `def` line must repeat the exact
  function and argument names from the question, then `(`, `)` and `:`; bodies need exact
  indentation, `return`, and the constants from the question. A model that spreads probability here
  writes broken code, so truncated sampling helps most at locks.
* **Forks**: positions where several continuations all lead to correct code: `a * x + b` or
  `b + a * x`, a loop or `sum(...)`, `if/else` or a conditional expression, a comprehension or
  `filter`. Every family lists at least two solutions that differ after AST normalisation, so
  pass@k can reward diversity and a collapsed policy loses it.

Difficulty is a property of the family: how many constants of the question (numbers, characters,
marks) its canonical answer must copy exactly, the locks a small model gets wrong most often. "easy"
copies none (or, in some instances, a single digit), "medium" one, "hard" two. Program structure (one
expression, a condition, a loop) hardly matters for a model that has learned the answer format: a
pre-trained CPU-default base at T 0.7 (208 eval problems x 4) writes the right loop or comparison and the
wrong constant, scoring pass@1 ~69% on easy, ~18% on medium and ~5% on hard families so labelled,
where labels by structure ordered them 22 / 13 / 32.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any

DIFFICULTIES = ("easy", "medium", "hard")
INDENT = "    "


@dataclasses.dataclass(frozen=True)
class Draft:
  """What a family's generator returns for one random draw.

  Attributes:
    question: the natural-language statement; names the function and its arguments.
    entry_point: the function name the answer must define.
    cases: (arguments, expected result) pairs; expected values come from a Python referee.
    solutions: distinct correct function definitions (the forks), the canonical one first.
    wrong_solutions: plausible function definitions that fail at least one case.
  """

  question: str
  entry_point: str
  cases: tuple[tuple[tuple[Any, ...], Any], ...]
  solutions: tuple[str, ...]
  wrong_solutions: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TaskInstance:
  """One concrete problem of a family, with its tests as assert statements."""

  family: str
  difficulty: str
  question: str
  entry_point: str
  tests: tuple[str, ...]
  solutions: tuple[str, ...]
  wrong_solutions: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Family:
  """A named problem generator of one difficulty."""

  name: str
  difficulty: str
  generate: Callable[[random.Random], Draft]

  def __post_init__(self):
    if self.difficulty not in DIFFICULTIES:
      raise ValueError(f"family {self.name!r}: difficulty must be one of {DIFFICULTIES}, got {self.difficulty!r}")

  def instantiate(self, instance_seed: int) -> TaskInstance:
    """Draws the problem that `instance_seed` names (the same seed always gives the same problem)."""
    draft = self.generate(random.Random(instance_seed))
    return TaskInstance(
      family=self.name,
      difficulty=self.difficulty,
      question=draft.question,
      entry_point=draft.entry_point,
      tests=assert_statements(draft.entry_point, draft.cases),
      solutions=draft.solutions,
      wrong_solutions=draft.wrong_solutions,
    )


def assert_statements(entry_point: str, cases: Sequence[tuple[tuple[Any, ...], Any]]) -> tuple[str, ...]:
  """Renders test cases as one-line asserts, e.g. `assert f(3) == 11`."""
  return tuple(f"assert {entry_point}({', '.join(map(repr, args))}) == {expected!r}" for args, expected in cases)


def function(name: str, args: str, *body: str) -> str:
  """Builds a function definition from body lines; nested lines carry their own extra indentation."""
  return f"def {name}({args}):\n" + "\n".join(INDENT + line for line in body)


def unique(items: Sequence[str]) -> tuple[str, ...]:
  """Drops repeated solutions (some templates coincide for special constants), keeping order."""
  return tuple(dict.fromkeys(items))
