"""Problems named by a config section (`synthesize.problems`, `eval.problems`) and their prompt token ids."""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
from absl import logging

from ssd_jax.data.chat import problem_to_messages
from ssd_jax.data.prompts import deduplicate_problems
from ssd_jax.data.tfds_sources import load_problem_dataset
from ssd_jax.evals.benchmarks import load_humaneval
from ssd_jax.evals.benchmarks import load_problems as load_benchmark
from ssd_jax.evals.problems import Problem
from ssd_jax.tasks import builtin_problems


def load_problems(section: ml_collections.ConfigDict, seed: int) -> list[Problem]:
  """The problems of a `problems` config section, de-duplicated and cut to `num_problems` if asked.

  Args:
    section: fields source ('builtin', 'jsonl', 'humaneval', 'tfds'), path, split, num_problems, dedup.
    seed: selects the built-in task's problems.
  """
  if section.source == "builtin":
    problems = builtin_problems(section.split, section.num_problems, seed)
  elif section.source == "tfds":
    problems = list(load_problem_dataset(section.path, section.split))
  elif section.source == "humaneval":
    problems = load_humaneval(section.path or None)
  elif section.source == "jsonl":
    problems = load_benchmark(section.path)
  else:
    raise ValueError(f"unknown problem source {section.source!r}")
  if section.dedup:
    problems, report = deduplicate_problems(problems)
    logging.info("problems from %s: %s", section.source, report.summary())
  if section.num_problems:
    problems = problems[: section.num_problems]
  if not problems:
    raise ValueError(f"problem source {section.source!r} ({section.path or section.split}) gave no problems")
  return problems


def prompt_messages(problem: Problem, prompting: ml_collections.ConfigDict) -> list[dict[str, str]]:
  """The chat messages asking for `problem` (no system turn when `prompting.system_prompt` is empty)."""
  return problem_to_messages(
    problem, system_prompt=prompting.system_prompt or None, include_public_tests=prompting.include_public_tests
  )


def encode_prompts(tokenizer, messages: Sequence[Sequence[dict[str, str]]]) -> list[list[int]]:
  """Token ids of each conversation rendered with the tokenizer's chat template, assistant turn opened."""
  return [tokenizer.encode(tokenizer.apply_chat_template(list(m), add_generation_prompt=True)) for m in messages]
