"""Code evaluation: sandboxed execution, benchmarks, pass@k, diversity, and reports."""

from ssd_jax.evals.code_extraction import assemble_program, extract_code
from ssd_jax.evals.diversity import (
  behaviour_signature,
  count_distinct_behaviours,
  count_distinct_programs,
  normalize_program,
)
from ssd_jax.evals.evaluate import EvalResult, ProblemResult, SampleResult, evaluate
from ssd_jax.evals.feedback import format_feedback
from ssd_jax.evals.isolation import IsolationError
from ssd_jax.evals.pass_at_k import bootstrap_mean_ci, pass_at_k
from ssd_jax.evals.report import compare_reports, write_report
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.summary import summarize
from ssd_jax.evals.verdicts import TestRun, Verdict

__all__ = [
  "EvalResult",
  "ExecutionJob",
  "IsolationError",
  "ProblemResult",
  "SampleResult",
  "Sandbox",
  "SandboxLimits",
  "TestRun",
  "Verdict",
  "assemble_program",
  "behaviour_signature",
  "bootstrap_mean_ci",
  "compare_reports",
  "count_distinct_behaviours",
  "count_distinct_programs",
  "evaluate",
  "extract_code",
  "format_feedback",
  "normalize_program",
  "pass_at_k",
  "summarize",
  "write_report",
]
