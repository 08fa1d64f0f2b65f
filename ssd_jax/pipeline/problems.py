"""Problems named by a config section (`synthesize.problems`, `eval.problems`, `self_distill.problems`)."""

from __future__ import annotations

import ml_collections
from absl import logging

from ssd_jax.data.problem_files import deduplicate_problems, load_humaneval_problems, load_problem_file, statement_key
from ssd_jax.data.problems import Problem
from ssd_jax.data.program_forms import normalize_program
from ssd_jax.data.tfds_sources import load_problem_dataset
from ssd_jax.evals.splits import split_problems
from ssd_jax.tasks import builtin_problems


def load_problems(section: ml_collections.ConfigDict, seed: int) -> list[Problem]:
  """The problems of a `problems` config section, de-duplicated and cut to `num_problems` if asked.

  Args:
    section: fields source ('builtin', 'jsonl', 'humaneval', 'tfds'), path, split, num_problems, dedup, half
      ('a' or 'b': one half of a seeded split by problem id, applied before `num_problems`), seed.
    seed: the run's seed: selects the built-in task's problems where `section.seed` is -1.
  """
  if section.source == "builtin":
    problems = builtin_problems(section.split, section.num_problems, seed if section.seed < 0 else section.seed)
  elif section.source == "tfds":
    problems = list(load_problem_dataset(section.path, section.split))
  elif section.source == "humaneval":
    problems = load_humaneval_problems(section.path or None)
  elif section.source == "jsonl":
    problems = load_problem_file(section.path)
  else:
    raise ValueError(f"unknown problem source {section.source!r}")
  if section.dedup:
    problems, report = deduplicate_problems(problems)
    logging.info("problems from %s: %s", section.source, report.summary())
  if section.half:
    split = split_problems([p.task_id for p in problems], 0.5, seed=section.half_seed)
    kept = set(split.dev if section.half == "a" else split.test)
    problems = [p for p in problems if p.task_id in kept]
  if section.num_problems:
    problems = problems[: section.num_problems]
  if not problems:
    raise ValueError(f"problem source {section.source!r} ({section.path or section.split}) gave no problems")
  return problems


def shared_problems(training: list[Problem], evaluation: list[Problem]) -> list[str]:
  """Ids of training problems that are evaluation problems too: the same task id, the same statement
  (normalised question and starter, as de-duplication compares them) or, where both carry one, the same
  reference solution up to the names it uses (`normalize_program`: one computation in other words and other
  names is still the same problem)."""
  ids = {p.task_id for p in evaluation}
  statements = {statement_key(p) for p in evaluation}
  references = {normalize_program(p.reference_solution) for p in evaluation if p.reference_solution}
  return [
    p.task_id
    for p in training
    if p.task_id in ids
    or statement_key(p) in statements
    or (p.reference_solution and normalize_program(p.reference_solution) in references)
  ]
