"""Problem sets: HumanEval, LiveCodeBench-format JSONL, and a simple JSONL format."""

from __future__ import annotations

import json

from ssd_jax.evals.benchmarks.humaneval import load_humaneval
from ssd_jax.evals.benchmarks.jsonl_problems import load_jsonl_problems
from ssd_jax.evals.benchmarks.livecodebench import filter_problems, load_livecodebench
from ssd_jax.evals.problems import Problem


def _is_livecodebench(path: str) -> bool:
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        return "question_content" in json.loads(line)
  return False


def load_problems(spec: str, difficulties=None, start_date=None, end_date=None) -> list[Problem]:
  """Loads ``"humaneval"`` or a JSONL file (LiveCodeBench format detected by its fields)."""
  if spec == "humaneval":
    problems = load_humaneval()
  elif _is_livecodebench(spec):
    problems = load_livecodebench(spec)
  else:
    problems = load_jsonl_problems(spec)
  return filter_problems(problems, difficulties, start_date, end_date)


__all__ = ["load_problems", "load_humaneval", "load_livecodebench", "load_jsonl_problems", "filter_problems"]
