"""The built-in programming task: deterministic problem splits, known solutions and a pre-training corpus.

Problems come from the families in `numeric_families`, `string_families` and `list_families` (see `families`
for what the task's locks and forks are). A problem belongs to exactly one split, decided by its program (the
canonical solution), whichever of a family's wordings states it (`split_of`): 'pretrain' never holds a held-out
program's canonical text, and 'synth' (prompts for self-distillation) and 'eval' never share a computation,
the program up to its function's and variables' names (`data.program_forms`). Pre-training does show the
held-out computations under other names: a family has few computations (2 to a few hundred), and the model
must learn each family to be tested on it. Its `task_id` is `builtin/<family>/<instance seed>`, which is
enough to regenerate everything about it.

Answers are fenced Python blocks holding one complete function definition:

    ```python
    def scale(x):
        return 3 * x + 7
    ```
"""

from __future__ import annotations

import hashlib
import random

import ssd_jax.tasks.families as families
import ssd_jax.tasks.list_families as list_families
import ssd_jax.tasks.numeric_families as numeric_families
import ssd_jax.tasks.string_families as string_families
from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.data.program_forms import normalize_program
from ssd_jax.tasks.families import Family
from ssd_jax.tasks.lock_distractors import random_lock_slip

SPLITS = ("pretrain", "synth", "eval")
# Programs (texts) that go to pre-training, in thousandths; the held-out rest is split by computation.
_PRETRAIN_SHARE = 800
# Held-out computations that go to 'synth', in thousandths; the others go to 'eval'.
_SYNTH_SHARE = 500
_ID_PREFIX = "builtin"
_MAX_MISSES_PER_FAMILY = 500


def registry() -> dict[str, Family]:
  """All families by name, in a fixed order (the order problems are interleaved in)."""
  families = numeric_families.FAMILIES + string_families.FAMILIES + list_families.FAMILIES
  names = [f.name for f in families]
  if len(set(names)) != len(names):
    raise ValueError(f"family names must be unique, got {names}")
  return {f.name: f for f in families}


def _bucket(text: str) -> int:
  return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 1000


def split_of(program: str) -> str:
  """The split a problem belongs to: a pure function of its program (canonical solution), not its wording.

  A family states one program in several wordings; hashing the wording would put them in different splits,
  and pre-training would show the exact answers of held-out problems. The held-out programs are split by
  computation, so self-distillation never trains on an evaluation problem's computation under other names.
  """
  if _bucket(program) < _PRETRAIN_SHARE:
    return "pretrain"
  return "synth" if _bucket(normalize_program(program)) < _SYNTH_SHARE else "eval"


def render_answer(code: str) -> str:
  """Wraps a function definition as the assistant's answer: a fenced Python block."""
  return f"```python\n{code}\n```"


def _to_problem(instance: families.TaskInstance, instance_seed: int) -> Problem:
  tests = tuple(TestCase(name=f"test_{i}", code=code) for i, code in enumerate(instance.tests))
  return Problem(
    task_id=f"{_ID_PREFIX}/{instance.family}/{instance_seed}",
    question=instance.question,
    entry_point=instance.entry_point,
    tests=tests,
    difficulty=instance.difficulty,
    reference_solution=instance.solutions[0],
  )


def builtin_problems(split: str, n: int, seed: int = 0) -> list[Problem]:
  """Draws `n` distinct problems of one split, interleaving the families in a fixed order.

  'eval' holds each computation once (the program up to names: `data.program_forms`), so no two of its
  problems, in the dev and test halves of an evaluation say, are one computation; 'synth' holds each program
  once, and 'pretrain' keeps every wording, which is more pre-training data for the same answers. A family
  that keeps repeating what was already drawn (it has nearly run out in this split) leaves the rotation, so
  large n skews the mix toward the larger families.

  Args:
    split: 'pretrain', 'synth' or 'eval'.
    n: how many problems.
    seed: selects which problems; the same (split, n, seed) always gives the same list, and a
      larger n extends the list of a smaller one.

  Returns:
    Problems with assert tests, a difficulty ('easy' / 'medium' / 'hard') and a reference solution.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  active = list(registry().values())
  rng = random.Random(f"{_ID_PREFIX}:{split}:{seed}")
  problems, seen, misses = [], set(), 0
  while len(problems) < n:
    if not active:
      raise ValueError(f"could only draw {len(problems)} distinct {split!r} problems, {n} were asked for")
    family = active[len(problems) % len(active)]
    instance_seed = rng.getrandbits(32)
    instance = family.instantiate(instance_seed)
    if split_of(instance.solutions[0]) != split:
      key = None
    elif split == "pretrain":
      key = instance.question
    else:
      key = instance.solutions[0] if split == "synth" else normalize_program(instance.solutions[0])
    if key is None or key in seen:
      misses += 1
      if misses == _MAX_MISSES_PER_FAMILY:  # This family has (nearly) run out of new problems here.
        active.remove(family)
        misses = 0
      continue
    misses = 0
    seen.add(key)
    problems.append(_to_problem(instance, instance_seed))
  return problems


def task_instance(problem: Problem) -> families.TaskInstance:
  """Regenerates the family instance behind a built-in problem from its task_id."""
  parts = problem.task_id.split("/")
  if len(parts) != 3 or parts[0] != _ID_PREFIX or not parts[2].isdigit():
    raise ValueError(f"not a built-in task id (want '{_ID_PREFIX}/<family>/<seed>'): {problem.task_id!r}")
  by_name = registry()
  if parts[1] not in by_name:
    raise ValueError(f"unknown built-in family {parts[1]!r} in task id {problem.task_id!r}")
  instance = by_name[parts[1]].instantiate(int(parts[2]))
  if instance.question != problem.question:
    raise ValueError(f"problem {problem.task_id!r} does not match its family's question; was it edited?")
  return instance


def solutions_for(problem: Problem) -> list[str]:
  """All known correct solutions (function definitions) of a built-in problem, canonical first."""
  return list(task_instance(problem).solutions)


def wrong_solutions_for(problem: Problem) -> list[str]:
  """Plausible but wrong function definitions for a built-in problem; each fails a test."""
  return list(task_instance(problem).wrong_solutions)


def variant_weights(count: int) -> list[float]:
  """Uneven odds of the known solutions in pre-training: the i-th has weight 1 / (i + 1)^2.

  The canonical form dominates and the others stay rare, so the pre-trained model prefers one branch
  at each fork while still giving the others some probability.
  """
  return [1.0 / (i + 1) ** 2 for i in range(count)]


def pretrain_corpus(
  n: int, seed: int = 0, corruption_rate: float = 0.1, lock_slip_rate: float = 0.0
) -> list[tuple[Problem, str]]:
  """Pre-training examples: pretrain-split problems with one rendered answer each.

  Args:
    n: number of examples (distinct problems).
    seed: selects problems and answers deterministically.
    corruption_rate: probability that an answer is one of the problem's wrong solutions, so the
      pre-trained model learns the format but not every program (a problem whose wrong solutions are all
      held-out programs gets a correct answer: about 3% of problems).
    lock_slip_rate: probability that a correct answer slips at one lock (`lock_distractors`), leaving the
      pre-trained model a distractor tail at the locks.

  Returns:
    (problem, answer) pairs; the answer is a fenced Python block (see `render_answer`).
  """
  if not 0.0 <= corruption_rate <= 1.0:
    raise ValueError(f"corruption_rate must be in [0, 1], got {corruption_rate!r}")
  if not 0.0 <= lock_slip_rate <= 1.0:
    raise ValueError(f"lock_slip_rate must be in [0, 1], got {lock_slip_rate!r}")
  rng = random.Random(f"{_ID_PREFIX}:corpus:{seed}")
  slips = random.Random(f"{_ID_PREFIX}:lock-slips:{seed}")  # Its own stream: rate 0 keeps the corpus as it was.
  corpus = []
  for problem in builtin_problems("pretrain", n, seed):
    instance = task_instance(problem)
    # A wrong answer can be another instance's program (range_sum from 8 written from 7 is range_sum from 7):
    # only those hashing into this split are shown. One equal to a held-out program's other form still can be
    # (1 of 3,000 wrong answers against 600 held-out problems); the default's problems have none.
    wrong = [code for code in instance.wrong_solutions if split_of(code) == "pretrain"]
    if rng.random() < corruption_rate and wrong:
      code = rng.choice(wrong)
    else:
      code = rng.choices(instance.solutions, weights=variant_weights(len(instance.solutions)))[0]
      if slips.random() < lock_slip_rate:
        code = random_lock_slip(code, slips)
    corpus.append((problem, render_answer(code)))
  return corpus
