"""Evaluates completions for a set of problems: extract, assemble, execute, and record verdicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from ssd_jax.data.problems import Problem
from ssd_jax.evals.code_extraction import assemble_program, extract_code
from ssd_jax.evals.feedback import MAX_FEEDBACK_CHARS, format_feedback
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import TestRun


@dataclasses.dataclass(frozen=True)
class SampleResult:
  """One completion and what it did.

  Attributes:
    completion: the raw completion, as generated.
    code: the extracted code (last fenced block, else the raw text).
    program: what ran: the code assembled with the problem's starter code.
    tests: one TestRun per grading test.
    feedback: execution feedback for a model (failing test, expected vs actual, traceback).
  """

  completion: str
  code: str
  program: str
  tests: tuple[TestRun, ...]
  feedback: str

  @property
  def passed(self) -> bool:
    """True when every grading test passed (and there was at least one)."""
    return bool(self.tests) and all(run.passed for run in self.tests)


@dataclasses.dataclass(frozen=True)
class ProblemResult:
  """All samples of one problem."""

  task_id: str
  difficulty: str
  samples: tuple[SampleResult, ...]

  @property
  def num_samples(self) -> int:
    return len(self.samples)

  @property
  def num_correct(self) -> int:
    return sum(sample.passed for sample in self.samples)


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """Results of an evaluation run, one entry per evaluated problem, in problem order.

  Attributes:
    problems: per problem results.
    sandbox: the isolation the verdicts were obtained under (``Sandbox.describe()``); its ``weak`` entry
      says why isolation was weaker than designed, None when every layer held.
  """

  problems: tuple[ProblemResult, ...]
  sandbox: dict = dataclasses.field(default_factory=dict)

  def by_task_id(self) -> dict[str, ProblemResult]:
    return {p.task_id: p for p in self.problems}


def evaluate(
  problems: Sequence[Problem],
  completions: Mapping[str, Sequence[str]],
  *,
  sandbox: Sandbox | None = None,
  limits: SandboxLimits = SandboxLimits(),
  workers: int | None = None,
  stop_on_failure: bool = False,
  progress: bool = False,
  allow_weak_sandbox: bool = False,
  feedback_chars: int = MAX_FEEDBACK_CHARS,
) -> EvalResult:
  """Runs every completion against its problem's grading tests.

  Args:
    problems: the problem set; those without completions are left out of the result.
    completions: task_id -> raw completions (n samples per problem).
    sandbox: a pool to reuse; a new one with ``limits`` and ``workers`` otherwise.
    limits: resource limits per execution, when no sandbox is given.
    workers: parallel executions, when no sandbox is given (default: CPU count).
    stop_on_failure: skip a sample's remaining tests after its first non-passing one
      (faster; behaviour diversity then sees fewer outputs).
    progress: show a progress bar.
    allow_weak_sandbox: when no sandbox is given and an isolation layer cannot be set up, run anyway
      (the result's ``sandbox["weak"]`` says what is missing) instead of raising IsolationError.
    feedback_chars: the cap on each sample's feedback (`format_feedback`): a teacher's budget, for one.

  Returns:
    An EvalResult with per problem, per sample, per test verdicts and feedback.

  Raises:
    ValueError: two problems share a task_id (their samples could not be told apart), or a completion's
      task_id names no problem.
  """
  by_id = {}
  for problem in problems:
    if problem.task_id in by_id:
      raise ValueError(f"task_id {problem.task_id!r} names more than one problem; task ids must be unique")
    by_id[problem.task_id] = problem
  unknown = sorted(set(completions) - set(by_id))
  if unknown:
    raise ValueError(f"completions for unknown task_ids: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
  evaluated = [p for p in problems if completions.get(p.task_id)]
  samples = [(p, raw) for p in evaluated for raw in completions[p.task_id]]
  codes = [extract_code(raw, p) for p, raw in samples]
  jobs = [
    ExecutionJob(assemble_program(p, code), p.tests, p.starter_code, p.entry_point)
    for (p, _), code in zip(samples, codes)
  ]
  owned = sandbox is None
  pool = Sandbox(limits, workers, allow_weak_sandbox=allow_weak_sandbox) if owned else sandbox
  try:
    runs = pool.run_many(jobs, stop_on_failure=stop_on_failure, progress=progress)
  finally:
    if owned:
      pool.close()
  results: dict[str, list[SampleResult]] = {p.task_id: [] for p in evaluated}
  for (problem, raw), code, job, test_runs in zip(samples, codes, jobs, runs):
    feedback = format_feedback(
      problem.tests, test_runs, feedback_chars, code=code, program_prefix=problem.program_prefix
    )
    results[problem.task_id].append(SampleResult(raw, code, job.program, test_runs, feedback))
  problem_results = tuple(ProblemResult(p.task_id, p.difficulty, tuple(results[p.task_id])) for p in evaluated)
  return EvalResult(problem_results, pool.describe())
