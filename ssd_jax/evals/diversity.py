"""Diversity of the samples drawn for one problem: distinct programs and distinct behaviours."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from ssd_jax.data.program_forms import normalize_program
from ssd_jax.evals.verdicts import TestRun, normalize_output


def count_distinct_programs(codes: Sequence[str]) -> int:
  """Number of distinct programs after ``normalize_program``."""
  return len({normalize_program(code) for code in codes})


def _outcome(run: TestRun) -> tuple[Hashable, ...]:
  output = tuple(map(tuple, normalize_output(run.stdout)))
  if run.passed:
    return (run.verdict.value, output)
  lines = run.message.strip().splitlines()
  return (run.verdict.value, output, lines[-1] if lines else "")  # e.g. the exception raised


def behaviour_signature(runs: Sequence[TestRun]) -> tuple[Hashable, ...]:
  """What a program did on each test: the verdict, the whitespace-normalised output, and
  for failures the last line of the message (the exception or the mismatch)."""
  return tuple(_outcome(run) for run in runs)


def count_distinct_behaviours(runs_per_sample: Sequence[Sequence[TestRun]]) -> int:
  """Number of distinct behaviour signatures among the samples of one problem."""
  return len({behaviour_signature(runs) for runs in runs_per_sample})
