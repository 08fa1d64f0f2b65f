"""Built-in task: disjoint deterministic splits, problems that regenerate, an imperfect pre-training corpus."""

import collections
import dataclasses
import hashlib
import random
import re

import pytest

from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.data.program_forms import normalize_program
from ssd_jax.tasks import builtin
from ssd_jax.tasks.lock_distractors import LOCK_KINDS, lock_slip


def passes(code, problem):
  namespace = {}
  exec(code, namespace)  # pylint: disable=exec-used
  try:
    for test in problem.tests:
      exec(test.code, namespace)  # pylint: disable=exec-used
  except AssertionError:
    return False
  return True


def fenced_code(answer):
  match = re.fullmatch(r"```python\n(.*)\n```", answer, flags=re.DOTALL)
  assert match, answer
  return match.group(1)


@pytest.fixture(scope="module")
def splits():
  return {
    split: builtin.builtin_problems(split, n, seed=3) for split, n in (("pretrain", 600), ("synth", 200), ("eval", 100))
  }


def test_splits_are_disjoint(splits):
  questions = {split: {p.question for p in problems} for split, problems in splits.items()}
  for split, problems in splits.items():
    assert len(questions[split]) == len(problems)  # Distinct within a split too.
  assert not questions["pretrain"] & questions["synth"]
  assert not questions["pretrain"] & questions["eval"]
  assert not questions["synth"] & questions["eval"]
  # Seeds pick different problems but never move one across splits.
  other = {p.question for p in builtin.builtin_problems("eval", 100, seed=4)}
  assert not other & (questions["pretrain"] | questions["synth"])
  assert other != questions["eval"]


def test_split_is_a_hash_of_the_program_then_of_its_computation(splits):
  bucket = lambda text: int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) % 1000
  for split, problems in splits.items():
    for problem in problems[:50]:
      if bucket(problem.reference_solution) < 800:
        assert split == "pretrain"
      else:
        assert split == ("synth" if bucket(normalize_program(problem.reference_solution)) < 500 else "eval")


def test_problems_are_deterministic_and_extend(splits):
  again = builtin.builtin_problems("eval", 100, seed=3)
  assert again == splits["eval"]
  assert builtin.builtin_problems("eval", 30, seed=3) == splits["eval"][:30]


def test_problem_fields(splits):
  problems = splits["eval"]
  assert all(isinstance(p, Problem) and p.starter_code == "" for p in problems)
  assert {p.difficulty for p in problems} == {"easy", "medium", "hard"}
  assert len({p.task_id.split("/")[1] for p in problems}) == len(builtin.registry())
  for problem in problems:
    assert problem.task_id.startswith("builtin/")
    assert problem.entry_point in problem.question
    assert all(isinstance(t, TestCase) and t.code.startswith(f"assert {problem.entry_point}(") for t in problem.tests)
    assert problem.reference_solution == builtin.solutions_for(problem)[0]


def test_solutions_for_pass_and_wrong_ones_fail(splits):
  for problem in splits["synth"][:80]:
    solutions = builtin.solutions_for(problem)
    assert len(solutions) >= 2
    assert all(passes(code, problem) for code in solutions)
    assert not any(passes(code, problem) for code in builtin.wrong_solutions_for(problem))


def test_task_ids_are_checked(splits):
  problem = splits["eval"][0]
  with pytest.raises(ValueError, match="not a built-in task id"):
    builtin.solutions_for(dataclasses.replace(problem, task_id="HumanEval/0"))
  with pytest.raises(ValueError, match="unknown built-in family"):
    builtin.solutions_for(dataclasses.replace(problem, task_id="builtin/nope/1"))
  with pytest.raises(ValueError, match="does not match"):
    builtin.solutions_for(dataclasses.replace(problem, question="something else"))


def test_bad_arguments_are_rejected():
  with pytest.raises(ValueError, match="split"):
    builtin.builtin_problems("train", 3, 0)
  with pytest.raises(ValueError, match="n must be"):
    builtin.builtin_problems("eval", -1, 0)
  with pytest.raises(ValueError, match="corruption_rate"):
    builtin.pretrain_corpus(3, 0, corruption_rate=1.5)


def test_pretrain_corpus_is_clean_without_corruption():
  corpus = builtin.pretrain_corpus(150, seed=1, corruption_rate=0.0)
  assert len(corpus) == 150
  assert {p.question for p, _ in corpus} == {p.question for p in builtin.builtin_problems("pretrain", 150, 1)}
  for problem, answer in corpus:
    code = fenced_code(answer)
    assert code in builtin.solutions_for(problem)
    assert passes(code, problem)


def test_pretrain_corpus_corruption_rate_and_uneven_variants():
  corpus = builtin.pretrain_corpus(600, seed=2, corruption_rate=0.25)
  assert corpus == builtin.pretrain_corpus(600, seed=2, corruption_rate=0.25)
  wrong = sum(not passes(fenced_code(answer), problem) for problem, answer in corpus)
  assert 0.17 < wrong / len(corpus) < 0.33, wrong
  ranks = collections.Counter()
  for problem, answer in corpus:
    solutions = builtin.solutions_for(problem)
    if fenced_code(answer) in solutions:
      ranks[solutions.index(fenced_code(answer))] += 1
  # The canonical form dominates, yet the other branches of each fork still appear.
  assert ranks[0] > 2 * sum(count for rank, count in ranks.items() if rank > 0) > 0


def test_all_wrong_with_full_corruption():
  corpus = builtin.pretrain_corpus(60, seed=0, corruption_rate=1.0)
  right = [problem for problem, answer in corpus if passes(fenced_code(answer), problem)]
  # Only where every wrong answer is a held-out program (which pre-training must not show).
  assert all(builtin.split_of(code) != "pretrain" for p in right for code in builtin.wrong_solutions_for(p))
  assert len(right) <= 6


def test_lock_slips_break_every_answer_at_one_lock():
  corpus = builtin.pretrain_corpus(120, seed=4, corruption_rate=0.0)
  rng = random.Random(0)
  for problem, answer in corpus:
    code = fenced_code(answer)
    for kind in LOCK_KINDS:
      if kind == "return" and "return" not in code:
        continue
      slipped = lock_slip(code, kind, rng)
      assert slipped != code and abs(len(slipped) - len(code)) <= 1  # One slip, not a new program.
      try:
        ok = passes(slipped, problem)
      except (SyntaxError, NameError):
        ok = False
      assert not ok, (kind, slipped)


def test_lock_slip_rate_leaves_a_tail_and_keeps_the_forks():
  clean = builtin.pretrain_corpus(400, seed=5, corruption_rate=0.0)
  slipped = builtin.pretrain_corpus(400, seed=5, corruption_rate=0.0, lock_slip_rate=0.2)
  assert [p.task_id for p, _ in clean] == [p.task_id for p, _ in slipped]
  changed = [(p, a, b) for (p, a), (_, b) in zip(clean, slipped) if a != b]
  assert 0.12 < len(changed) / len(clean) < 0.28
  for problem, before, _ in changed:
    assert fenced_code(before) in builtin.solutions_for(problem)  # The slip hit a known correct variant.
  assert builtin.pretrain_corpus(400, seed=5, corruption_rate=0.0, lock_slip_rate=0.0) == clean
