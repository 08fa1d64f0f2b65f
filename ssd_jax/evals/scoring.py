"""Scores completions the way the tuned protocol needs: grading tests, probes of the correct samples, summary."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ssd_jax.data.problems import Problem
from ssd_jax.evals.correct_diversity import DEFAULT_DIVERSITY_M
from ssd_jax.evals.evaluate import EvalResult, evaluate
from ssd_jax.evals.probes import ProbeInputs, correct_sample_behaviours, generated_probe_inputs
from ssd_jax.evals.sandbox import Sandbox, SandboxLimits
from ssd_jax.evals.shared_sandbox import shared
from ssd_jax.evals.summary import summarize
from ssd_jax.process_group import ProcessGroup


def score_completions(
  problems: Sequence[Problem],
  completions: Mapping[str, Sequence[str]],
  *,
  ks: Sequence[int],
  limits: SandboxLimits = SandboxLimits(),
  workers: int | None = None,
  allow_weak_sandbox: bool = False,
  num_resamples: int = 1000,
  seed: int = 0,
  known_solutions: Callable[[Problem], Sequence[str] | None] | None = None,
  probe_inputs: ProbeInputs | None = generated_probe_inputs,
  diversity_m: int = DEFAULT_DIVERSITY_M,
  group: ProcessGroup | None = None,
) -> tuple[EvalResult, dict]:
  """Runs the completions against the tests, probes the correct ones, and summarises.

  Args:
    problems: the problems; those without completions are left out.
    completions: task_id -> raw completions.
    ks: pass@k to tabulate (the summary also has the full curve k = 1..n).
    limits: sandbox limits per execution.
    workers: parallel executions (default: CPU count).
    allow_weak_sandbox: run with the isolation layers that can be set up (the summary's `sandbox` says
      what is missing) instead of raising IsolationError.
    num_resamples: bootstrap replicates.
    seed: bootstrap seed.
    known_solutions: problem -> the task's known correct solutions (None: it knows none), e.g. the
      built-in task's `solutions_for`; None: no task knows any.
    probe_inputs: problem -> extra inputs for behaviour clusters; None skips probing.
    diversity_m: correct samples per problem that diversity is measured at.
    group: the run's processes, when several call this together: each grades its share of the samples and
      every process returns the whole evaluation (None: this process grades everything).

  Returns:
    (the evaluation, its `summarize` output).
  """
  with Sandbox(limits, workers, allow_weak_sandbox=allow_weak_sandbox) as pool:
    sandbox = shared(pool, group)
    result = evaluate(problems, completions, sandbox=sandbox)
    behaviours = None if probe_inputs is None else correct_sample_behaviours(problems, result, sandbox, probe_inputs)
  evaluated = {p.task_id for p in result.problems}
  known = None
  if known_solutions is not None:
    known = {p.task_id: known_solutions(p) for p in problems if p.task_id in evaluated}
  summary = summarize(
    result,
    ks,
    num_resamples=num_resamples,
    seed=seed,
    behaviours=behaviours,
    known_solutions=known,
    diversity_m=diversity_m,
  )
  return result, summary
