"""Diversity among the correct samples of a problem: how many different correct solutions a model finds.

Seed 003's question is whether training collapses the range of *correct* answers. Counting distinct
programs or behaviours over all samples cannot show that: wrong samples are distinct in many ways, and
on the grading tests every correct sample behaves the same, so both counts fall whenever accuracy rises.
Here only correct samples (every grading test passed) are grouped, three ways:

* AST clusters: samples whose programs are equal after `normalize_program` (no comments, docstrings,
  annotations or name spelling) form one cluster; a program that does not read standard input is compared
  without its usage example (`usage_code`: a usage example after the solution does not make it another
  solution).
* Behaviour clusters: samples that print the same results (or raise the same exception types) on extra
  inputs beyond the grading tests (see `probes`), including inputs outside the statement's domain, where
  different correct strategies part ways (a formula and a loop on a float, `str` and `% 10` on a negative).
* Known solutions: for a task that lists its alternative correct solutions (the built-in task's forks),
  the AST clusters that are one of them.

A model that solves a problem more often has more correct samples and so, mechanically, can show more
clusters. `expected_distinct` removes that: it is the expected number of clusters among m correct samples
drawn without replacement, the same for every model once each has at least m correct samples; comparisons
use only problems where every compared model has at least m (`DEFAULT_DIVERSITY_M`) correct samples.
"""

from __future__ import annotations

import ast
import collections
from collections.abc import Hashable, Mapping, Sequence

from ssd_jax.data.program_forms import normalize_program
from ssd_jax.evals.code_context import reads_stdin
from ssd_jax.evals.pass_at_k import pass_at_k
from ssd_jax.evals.usage_code import solution_statements

DEFAULT_DIVERSITY_M = 2


def cluster_sizes(keys: Sequence[Hashable]) -> list[int]:
  """Sizes of the groups of equal keys, largest first; one key per correct sample."""
  return sorted(collections.Counter(keys).values(), reverse=True)


def expected_distinct(sizes: Sequence[int], m: int, total: int | None = None) -> float:
  """Expected number of distinct clusters among m samples drawn without replacement.

  With c samples in all, a cluster of size s is missed by all m draws with probability
  C(c - s, m) / C(c, m), so the expectation is sum_j (1 - C(c - s_j, m) / C(c, m)), which is the
  pass@m estimator with the cluster as the "correct" set. m = 1 gives 1 when the clusters cover all
  samples; m = c gives len(sizes).

  Args:
    sizes: sizes of the clusters counted (all of them, or e.g. only those that are known solutions).
    m: number of samples drawn, 1 <= m <= c.
    total: c, the number of samples drawn from; default sum(sizes).
  """
  c = sum(sizes) if total is None else total
  return float(sum(pass_at_k(c, s, m) for s in sizes))


def solution_form(code: str) -> str:
  """`normalize_program` of what a correct program answers with.

  A program that does not read standard input is graded through its definitions, so its usage example
  (`usage_code`: top-level expression statements, asserts, `if __name__ == "__main__":` blocks and the
  assignments only they read) is left out; a program that reads standard input, or does not parse, is taken
  whole. Code Python's AST tools cannot take (nested too deep, an integer too long to print) is compared as
  its whitespace-collapsed text.
  """
  try:
    tree = ast.parse(code)
    if not reads_stdin(tree):
      body = solution_statements(tree.body)
      if body != tree.body:
        code = ast.unparse(ast.Module(body=body, type_ignores=[]))
    return normalize_program(code)
  except SyntaxError:
    return normalize_program(code)
  except (RecursionError, MemoryError, ValueError):  # Nested too deep, or an int too long to print.
    return " ".join(code.split())


def correct_solution_clusters(
  codes: Sequence[str],
  passed: Sequence[bool],
  behaviours: Sequence[Hashable] | None = None,
  known_solutions: Sequence[str] | None = None,
) -> dict:
  """The clusters of one problem's correct samples.

  Args:
    codes: extracted code of every sample, [n].
    passed: whether each sample passed every grading test, [n].
    behaviours: a behaviour signature per *correct* sample, in sample order, [c]; None when the
      problem has no extra inputs to run.
    known_solutions: the task's known correct solutions, or None when it knows none.

  Returns:
    {"ast_clusters": sizes, "behaviour_clusters": sizes or None, "known_solutions": number of
    distinct known solutions (after normalisation) or None, "known_clusters": sizes of the AST
    clusters that are a known solution, or None}.
  """
  correct = [solution_form(code) for code, ok in zip(codes, passed, strict=True) if ok]
  if behaviours is not None and len(behaviours) != len(correct):
    raise ValueError(f"need one behaviour per correct sample: {len(behaviours)} for {len(correct)}")
  known = None if known_solutions is None else {solution_form(code) for code in known_solutions}
  counts = collections.Counter(correct)
  return {
    "ast_clusters": cluster_sizes(correct),
    "behaviour_clusters": None if behaviours is None else cluster_sizes(behaviours),
    "known_solutions": None if known is None else len(known),
    "known_clusters": None if known is None else sorted((counts[k] for k in known if k in counts), reverse=True),
  }


def problem_diversity_at_m(entry: Mapping, m: int, field: str) -> float | None:
  """One problem's expected number of distinct clusters among m of its correct samples.

  Args:
    entry: a per-problem record with "c" and the fields of `correct_solution_clusters`.
    m: correct samples drawn.
    field: 'ast_clusters', 'behaviour_clusters' or 'known_clusters'.

  Returns:
    The expectation, or None when the problem has fewer than m correct samples or lacks the field.
  """
  sizes = entry.get(field)
  if sizes is None or entry["c"] < m:
    return None
  return expected_distinct(sizes, m, total=entry["c"])


def _mean(values) -> float | None:
  values = [v for v in values if v is not None]
  return float(sum(values) / len(values)) if values else None


def diversity_at_m(per_problem: Sequence[Mapping], m: int = DEFAULT_DIVERSITY_M) -> dict[str, float | int | None]:
  """Mean correct-solution diversity of one model over the problems it solved at least m times.

  Args:
    per_problem: entries with "c" and the fields of `correct_solution_clusters`.
    m: correct samples per problem the expectation is taken over.

  Returns:
    {"m"; "num_problems": problems with c >= m; "ast", "behaviour": mean expected distinct AST /
    behaviour clusters among m correct samples; "known": mean expected distinct known solutions among
    them; "known_share": that over the problem's number of known solutions; "ast_all", "behaviour_all":
    mean distinct clusters among all correct samples of problems with c >= 1 (these grow with accuracy,
    so they are not comparable across models); "measured": how many of the problems with c >= m each of
    "ast", "behaviour" and "known" is a mean over (a problem without behaviour or known-solution data is
    left out of that mean)}. A field is None where no problem has its data.
  """
  eligible = [p for p in per_problem if p["c"] >= m]
  solved = [p for p in per_problem if p["c"] >= 1]
  fields = {"ast": "ast_clusters", "behaviour": "behaviour_clusters", "known": "known_clusters"}
  return {
    "m": m,
    "num_problems": len(eligible),
    "measured": {
      name: sum(problem_diversity_at_m(p, m, field) is not None for p in eligible) for name, field in fields.items()
    },
    "ast": _mean(problem_diversity_at_m(p, m, "ast_clusters") for p in eligible),
    "behaviour": _mean(problem_diversity_at_m(p, m, "behaviour_clusters") for p in eligible),
    "known": _mean(problem_diversity_at_m(p, m, "known_clusters") for p in eligible),
    "known_share": _mean(
      problem_diversity_at_m(p, m, "known_clusters") / p["known_solutions"]
      for p in eligible
      if p["known_clusters"] is not None and p["known_solutions"]
    ),
    "ast_all": _mean(len(p["ast_clusters"]) for p in solved),
    "behaviour_all": _mean(None if p["behaviour_clusters"] is None else len(p["behaviour_clusters"]) for p in solved),
  }
