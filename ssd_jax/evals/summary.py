"""Turns an EvalResult into numbers: pass@k with bootstrap intervals, per difficulty, diversity."""

from __future__ import annotations

import collections
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from ssd_jax.evals.correct_diversity import DEFAULT_DIVERSITY_M, correct_solution_clusters, diversity_at_m
from ssd_jax.evals.diversity import count_distinct_behaviours, count_distinct_programs
from ssd_jax.evals.evaluate import EvalResult, ProblemResult
from ssd_jax.evals.pass_at_k import DEFAULT_KS, bootstrap_mean_ci, pass_at_k, pass_at_k_curve, valid_ks

# Difficulty labels in reading order; other labels follow alphabetically.
DIFFICULTY_ORDER = ("easy", "medium", "hard")


def difficulty_sort_key(label: str) -> tuple[int, str]:
  """Orders difficulty labels easy, medium, hard, then any others alphabetically."""
  return (DIFFICULTY_ORDER.index(label) if label in DIFFICULTY_ORDER else len(DIFFICULTY_ORDER), label)


def _pass_at_k_block(
  problems: Sequence[ProblemResult], ks: Sequence[int], num_resamples: int, seed: int
) -> dict[str, dict[str, float]]:
  block = {}
  for k in ks:
    values = [pass_at_k(p.num_samples, p.num_correct, k) for p in problems]
    low, high = bootstrap_mean_ci(values, num_resamples=num_resamples, seed=seed)
    block[str(k)] = {"mean": float(np.mean(values)), "ci_low": low, "ci_high": high}
  return block


def problem_metrics(
  problem: ProblemResult,
  ks: Sequence[int],
  behaviours: Sequence[Hashable] | None = None,
  known_solutions: Sequence[str] | None = None,
) -> dict:
  """Per-problem numbers: n, c, pass@k, distinct programs and behaviours over all samples, and the
  clusters of the correct samples (see `correct_diversity.correct_solution_clusters`)."""
  n, c = problem.num_samples, problem.num_correct
  verdicts = collections.Counter(run.verdict.value for s in problem.samples for run in s.tests)
  return {
    "task_id": problem.task_id,
    "difficulty": problem.difficulty,
    "n": n,
    "c": c,
    "pass_at_k": {str(k): pass_at_k(n, c, k) for k in ks if k <= n},
    "pass_at_n": pass_at_k(n, c, n),
    "distinct_programs": count_distinct_programs([s.code for s in problem.samples]),
    "distinct_behaviours": count_distinct_behaviours([s.tests for s in problem.samples]),
    "verdicts": dict(sorted(verdicts.items())),
    **correct_solution_clusters(
      [s.code for s in problem.samples], [s.passed for s in problem.samples], behaviours, known_solutions
    ),
  }


def weak_sandbox_notice(summary: dict) -> str | None:
  """The line every report of a run graded in a weak sandbox starts with; None when isolation held."""
  weak = (summary.get("sandbox") or {}).get("weak")
  return f"**WEAK SANDBOX**: verdicts were obtained without full isolation ({weak})." if weak else None


def summarize(
  result: EvalResult,
  ks: Sequence[int] = DEFAULT_KS,
  num_resamples: int = 1000,
  seed: int = 0,
  behaviours: Mapping[str, Sequence[Hashable] | None] | None = None,
  known_solutions: Mapping[str, Sequence[str] | None] | None = None,
  diversity_m: int = DEFAULT_DIVERSITY_M,
) -> dict:
  """Every number of a run, as a JSON-ready dict.

  Args:
    result: the evaluation.
    ks: the k to report, besides 1 and the smallest n (always reported); those above the smallest n of any
      problem are dropped.
    num_resamples: bootstrap replicates for the confidence intervals (over problems).
    seed: bootstrap seed.
    behaviours: task_id -> a behaviour per correct sample on extra inputs (`probes`); None: not probed.
    known_solutions: task_id -> the task's known correct solutions; None: the task knows none.
    diversity_m: correct samples per problem that correct-solution diversity is measured at.
  """
  problems = result.problems
  if not problems:
    raise ValueError("summarize: the evaluation has no problems with samples")
  ns = [p.num_samples for p in problems]
  ks = valid_ks(ns, (1, *ks, min(ns)))
  behaviours, known_solutions = behaviours or {}, known_solutions or {}
  per_problem = [problem_metrics(p, ks, behaviours.get(p.task_id), known_solutions.get(p.task_id)) for p in problems]
  by_difficulty = {}
  for difficulty in sorted({p.difficulty for p in problems}, key=difficulty_sort_key):
    group = [p for p in problems if p.difficulty == difficulty]
    by_difficulty[difficulty or "unspecified"] = {
      "num_problems": len(group),
      "pass_at_k": _pass_at_k_block(group, ks, num_resamples, seed),
    }
  gains = [m["pass_at_n"] - pass_at_k(m["n"], m["c"], 1) for m in per_problem]
  verdicts = collections.Counter()
  for m in per_problem:
    verdicts.update(m["verdicts"])
  return {
    "sandbox": result.sandbox,  # first, so a weak sandbox is the first thing a reader of results.json sees
    "num_problems": len(problems),
    "num_samples": int(sum(ns)),
    "samples_per_problem": {"min": int(min(ns)), "max": int(max(ns))},
    "ks": ks,
    "pass_at_k": _pass_at_k_block(problems, ks, num_resamples, seed),
    "pass_at_k_curve": pass_at_k_curve(ns, [p.num_correct for p in problems], num_resamples, seed),
    "by_difficulty": by_difficulty,
    "diversity": {
      "mean_distinct_programs": float(np.mean([m["distinct_programs"] for m in per_problem])),
      "mean_distinct_behaviours": float(np.mean([m["distinct_behaviours"] for m in per_problem])),
      "mean_pass_at_k_gain_1_to_n": float(np.mean(gains)),
    },
    "correct_diversity": diversity_at_m(per_problem, diversity_m),
    "verdict_counts": dict(sorted(verdicts.items())),
    "bootstrap": {"num_resamples": num_resamples, "seed": seed, "confidence": 0.95},
    "per_problem": per_problem,
  }
