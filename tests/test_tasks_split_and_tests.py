"""Built-in task: splits keep every program in one split, and each family's tests catch single-edit slips.

A family states one program in several wordings, so the splits must separate programs, not wordings; and one
computation under several names, so self-distillation's and evaluation's problems must separate computations.
A family's difficulty is copying its constants, so its tests must fail an answer with a constant or comparison
off by one.
"""

import ast
import collections
import copy
import random
import re
import string
import sys

import pytest
from config_files import load_config

from ssd_jax.data.problems import Problem
from ssd_jax.data.program_forms import normalize_program
from ssd_jax.pipeline.problems import load_problems, shared_problems
from ssd_jax.tasks import builtin

REGISTRY = builtin.registry()
MUTATED_INSTANCES = 200  # Per family.
_COMPARISONS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
# Lines a call may execute: 15x the most any listed solution needs on the domain or the tests.
_STEP_LIMIT = 5000


def _programs(problems):
  """Every known correct solution of the problems (canonical and forks)."""
  return {code for problem in problems for code in builtin.solutions_for(problem)}


def test_cpu_default_trains_on_no_eval_program():
  config = load_config("default")
  evaluation = load_problems(config.eval.problems, config.seed)
  training = {
    "pretrain": builtin.builtin_problems("pretrain", config.pretrain.num_examples, config.seed),
    "synthesize": load_problems(config.synthesize.problems, config.seed),
    "self_distill": load_problems(config.self_distill.problems, config.seed),
  }
  eval_programs = _programs(evaluation)
  for name, problems in training.items():
    shared = eval_programs & _programs(problems)
    assert not shared, (name, len(shared), sorted(shared)[:2])
  # Self-distillation's problems share no computation with evaluation's, whatever the names; pre-training's
  # do (a family has few computations, and a model must learn the family), under other names only.
  computations = {normalize_program(p.reference_solution) for p in evaluation}
  for name in ("synthesize", "self_distill"):
    assert not computations & {normalize_program(p.reference_solution) for p in training[name]}, name
    # The pipeline's own check sees the same: no eval problem reworded or renamed among the training ones.
    assert not shared_problems(training[name], evaluation), name


def _shown_code(answer):
  return answer.removeprefix("```python\n").removesuffix("\n```")


def test_pretraining_answers_show_no_held_out_program():
  """Wrong answers shift a constant, which can make them another problem's program (range_sum from 7)."""
  config = load_config("default")
  corpus = builtin.pretrain_corpus(
    config.pretrain.num_examples, config.seed, config.pretrain.corruption_rate, config.pretrain.lock_slip_rate
  )
  shown = {_shown_code(answer) for _, answer in corpus}
  held_out = [config.eval.problems, config.synthesize.problems, config.self_distill.problems]
  for problems in [load_problems(source, config.seed) for source in held_out]:
    forms = {code for p in problems for code in builtin.solutions_for(p)}  # Every known form of each program.
    assert not shown & forms, sorted(shown & forms)[:2]
  # Every answer wrong, against more held-out problems: no held-out program in its canonical form.
  corpus = builtin.pretrain_corpus(3000, seed=0, corruption_rate=1.0)
  held_out = builtin.builtin_problems("eval", 200) + builtin.builtin_problems("synth", 400)
  shown = {_shown_code(answer) for _, answer in corpus}
  assert not shown & {p.reference_solution for p in held_out}


@pytest.mark.parametrize("split, n", [("synth", 256), ("eval", 64), ("eval", 100)])
@pytest.mark.parametrize("seed", [0, 3])
def test_held_out_lists_hold_each_program_once(split, n, seed):
  problems = builtin.builtin_problems(split, n, seed)
  key = normalize_program if split == "eval" else str  # Evaluation: no computation twice, whatever the names.
  programs = collections.Counter(key(p.reference_solution) for p in problems)
  assert [code for code, count in programs.items() if count > 1] == []
  assert builtin.builtin_problems(split, n // 2, seed) == problems[: n // 2]  # Still a prefix of a longer list.


def test_pretrain_keeps_every_wording_of_its_programs():
  problems = builtin.builtin_problems("pretrain", 600, seed=3)
  assert len({p.question for p in problems}) == len(problems)
  by_program = collections.Counter(p.reference_solution for p in problems)
  assert max(by_program.values()) > 1  # More pre-training data for the same answer.
  assert all(builtin.split_of(code) == "pretrain" for code in by_program)


def _problem(task_id, question, reference=""):
  return Problem(task_id=task_id, question=question, reference_solution=reference)


def test_shared_problems_counts_a_reworded_program():
  code = "def f(x):\n    return 3 * x + 1"
  evaluation = [_problem("eval/0", "Return 3 * x + 1.", code), _problem("eval/1", "Reverse a string.")]
  training = [
    _problem("train/0", "Multiply x by 3, then add 1.", "def f(x):\n  return 3 * x  +  1\n"),  # Reworded, respaced.
    _problem("train/1", "Multiply x by 4, then add 1.", "def f(x):\n    return 4 * x + 1"),
    _problem("train/2", "Reverse  a string."),  # No reference on either side: the statement decides.
    _problem("train/3", "Sort a list."),
    _problem("train/4", "Triple y, add one.", "def g(y):\n    return 3 * y + 1"),  # Renamed.
    _problem("eval/1", "Something else."),
  ]
  assert shared_problems(training, evaluation) == ["train/0", "train/2", "train/4", "eval/1"]
  # A problem without a reference never matches on the missing one.
  assert shared_problems([_problem("t", "Sort a list.")], [_problem("e", "Reverse a string.")]) == []


class _StepLimit(Exception):
  pass


def _limited(fn, *args):
  """`fn(*args)`, stopped after `_STEP_LIMIT` executed lines: a mutant may loop forever, and counting lines rather
  than time gives the same verdict on a busy machine."""
  steps = 0

  def count(frame, event, arg):
    nonlocal steps
    if event == "line":
      steps += 1
      if steps > _STEP_LIMIT:
        raise _StepLimit()  # Also unsets the trace function; `finally` puts the previous one back.
    return count

  previous = sys.gettrace()
  sys.settrace(count)
  try:
    return fn(*args)
  finally:
    sys.settrace(previous)


def _define(code, entry_point):
  namespace = {}
  exec(code, namespace)  # pylint: disable=exec-used  # The task's own solutions, or one-token edits of them.
  return namespace[entry_point]


def _outcome(fn, value):
  """What `fn` does on one input: its result, the exception it raises, or running past the step limit."""
  try:
    return ("ok", _limited(fn, list(value) if isinstance(value, list) else value))
  except _StepLimit:
    return ("runs on",)
  except Exception as e:  # pylint: disable=broad-except  # A mutant may raise anything.
    return ("raises", type(e).__name__)


def _passes_tests(code, tests):
  namespace = {}
  try:
    exec(code, namespace)  # pylint: disable=exec-used
    for test in tests:
      _limited(exec, test, namespace)
  except Exception:  # pylint: disable=broad-except  # A failed assert, a crash or running on all fail.
    return False
  return True


def _domain(family):
  """Inputs every answer of `family` must handle, boundaries included: each int around the constants, each letter,
  each one-element list, and random longer strings and lists."""
  rng = random.Random(f"domain:{family}")
  if family == "digits":
    return [*range(0, 300), *(rng.randint(1000, 10**6) for _ in range(50))]
  if family in ("reverse", "wrap", "count_char"):
    words = ("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8))) for _ in range(60))
    return ["", *string.ascii_lowercase, *words]
  if family in ("sum_multiples", "filter_greater", "extreme"):
    lists = ([rng.randint(-25, 49) for _ in range(rng.randint(2, 7))] for _ in range(60))
    return [[], *([v] for v in range(-25, 50)), *lists]
  return list(range(-25, 100))


def _mutants(code):
  """Single-edit slips of `code`: an int constant off by one, a comparison swapped for another, a one-character
  string shifted to its neighbour."""
  tree = ast.parse(code)
  edits = []
  for index, node in enumerate(ast.walk(tree)):
    if isinstance(node, ast.Constant) and type(node.value) is int:
      edits += [(index, "value", node.value + step) for step in (-1, 1)]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) == 1:
      edits += [(index, "value", chr(ord(node.value) + step)) for step in (-1, 1)]
    elif isinstance(node, ast.Compare):
      edits += [
        (index, ("ops", j), other) for j, op in enumerate(node.ops) for other in _COMPARISONS if type(op) is not other
      ]
  mutants = set()
  for index, field, value in edits:
    mutated = copy.deepcopy(tree)
    node = list(ast.walk(mutated))[index]
    if field == "value":
      node.value = value
    else:
      node.ops[field[1]] = value()
    mutants.add(ast.unparse(mutated))
  return sorted(mutants)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_listed_solutions_agree_everywhere_in_the_domain(name):
  domain = _domain(name)
  for seed in range(MUTATED_INSTANCES):
    instance = REGISTRY[name].instantiate(seed)
    reference = _define(instance.solutions[0], instance.entry_point)
    expected = [_outcome(reference, value) for value in domain]
    assert all(outcome[0] == "ok" for outcome in expected), instance.question
    for code in instance.solutions[1:]:
      fn = _define(code, instance.entry_point)
      assert [_outcome(fn, value) for value in domain] == expected, (instance.question, code)


def test_range_sum_states_the_empty_sum():
  for seed in range(60):
    instance = REGISTRY["range_sum"].instantiate(seed)
    start = re.search(r"range\((\d+), ", instance.solutions[0]).group(1)
    assert re.search(rf"0 (when \w+ < |if \w+ is less than ){start}\b", instance.question), instance.question


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_tests_fail_every_single_edit_slip(name):
  domain = _domain(name)
  slipped_through = []
  for seed in range(MUTATED_INSTANCES):
    instance = REGISTRY[name].instantiate(seed)
    passing = [m for code in instance.solutions for m in _mutants(code) if _passes_tests(m, instance.tests)]
    if not passing:
      continue
    reference = _define(instance.solutions[0], instance.entry_point)
    expected = [_outcome(reference, value) for value in domain]
    for mutant in passing:
      # A slip that changes no answer in the domain is another correct solution: nothing to catch.
      fn = _define(mutant, instance.entry_point)
      if any(_outcome(fn, value) != want for value, want in zip(domain, expected)):
        slipped_through.append((instance.question, mutant))
  assert not slipped_through, (len(slipped_through), slipped_through[:3])
