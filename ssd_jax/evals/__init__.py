"""Code evaluation: sandboxed execution, benchmarks, pass@k, diversity, the tuned protocol, and reports."""

from ssd_jax.data.program_forms import normalize_program
from ssd_jax.evals.code_extraction import assemble_program, extract_code
from ssd_jax.evals.comparison import Candidate, compare_models
from ssd_jax.evals.comparison_report import comparison_table, report_text, write_comparison
from ssd_jax.evals.correct_diversity import correct_solution_clusters, diversity_at_m, expected_distinct
from ssd_jax.evals.diversity import behaviour_signature, count_distinct_behaviours, count_distinct_programs
from ssd_jax.evals.evaluate import EvalResult, ProblemResult, SampleResult, evaluate
from ssd_jax.evals.feedback import format_feedback
from ssd_jax.evals.isolation import IsolationError
from ssd_jax.evals.pass_at_k import bootstrap_mean_ci, paired_difference, pass_at_k, pass_at_k_curve
from ssd_jax.evals.probes import correct_sample_behaviours, generated_probe_inputs
from ssd_jax.evals.protocol import DecodingGrid, DecodingSetting, Selection, parse_grid, select_best
from ssd_jax.evals.report import compare_reports, write_report
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.scoring import score_completions
from ssd_jax.evals.splits import Split, record_split, split_problems
from ssd_jax.evals.summary import summarize
from ssd_jax.evals.verdicts import TestRun, Verdict

__all__ = [
  "Candidate",
  "DecodingGrid",
  "DecodingSetting",
  "EvalResult",
  "ExecutionJob",
  "IsolationError",
  "ProblemResult",
  "SampleResult",
  "Sandbox",
  "SandboxLimits",
  "Selection",
  "Split",
  "TestRun",
  "Verdict",
  "assemble_program",
  "behaviour_signature",
  "bootstrap_mean_ci",
  "compare_models",
  "compare_reports",
  "comparison_table",
  "correct_sample_behaviours",
  "correct_solution_clusters",
  "count_distinct_behaviours",
  "count_distinct_programs",
  "diversity_at_m",
  "evaluate",
  "expected_distinct",
  "extract_code",
  "format_feedback",
  "generated_probe_inputs",
  "normalize_program",
  "paired_difference",
  "parse_grid",
  "pass_at_k",
  "pass_at_k_curve",
  "record_split",
  "report_text",
  "score_completions",
  "select_best",
  "split_problems",
  "summarize",
  "write_comparison",
  "write_report",
]
