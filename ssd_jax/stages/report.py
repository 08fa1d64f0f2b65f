"""The `report` stage: each model at its dev-chosen candidate against the base at its own, on the test split.

Reads `eval/split.json` and every model's candidates as the eval stage recorded them (`selection.json`, then
each candidate's dev and, for the chosen one, test results), and writes `report/comparison.{json,txt}` and the
plots of `evals.comparison_report`: test pass@k for k = 1..n, paired t intervals of each method minus
the base, pass@1 / pass@n against T_eval, per difficulty, and correct-solution diversity. The table, which
names the setting each row used, goes to stdout, followed by the self_distill stage's teacher diagnostic when
the run has one (is the in-context teacher better than the student it trains?), and the code that ran the
stages it compares (`code_versions` in the JSON).
"""

from __future__ import annotations

import json
import os

from ssd_jax import config as config_lib
from ssd_jax.evals import compare_models, grid_runs, report_text, write_comparison
from ssd_jax.evals.splits import SPLIT_FILE, Split
from ssd_jax.onpolicy.teacher_diagnostic import format_diagnostic
from ssd_jax.pipeline import code_version, run_state, stage_dependencies
from ssd_jax.pipeline.context import RunContext

REFERENCE_MODEL = "base"


def run(ctx: RunContext) -> None:
  """Writes `report/` from the eval stage's results and prints the comparison table."""
  config, layout = ctx.config, ctx.layout
  split_path = os.path.join(layout.eval_root, SPLIT_FILE)
  if not os.path.isfile(split_path):
    raise FileNotFoundError(f"no evaluation split at {split_path}; run the 'eval' stage first")
  with open(split_path) as f:
    split = Split.from_json(json.load(f))
  names = config_lib.eval_model_names(config)
  candidates = {name: grid_runs.load_recorded_candidates(layout.eval_root, name) for name in names}
  comparison = compare_models(
    candidates,
    split,
    reference=REFERENCE_MODEL if REFERENCE_MODEL in names else names[0],
    metric_k=config.eval.select_k,
    diversity_m=config.eval.diversity_m,
    num_resamples=config.eval.bootstrap,
    seed=ctx.seed,
    tune_at_n=config_lib.tunes_pass_at_n(config),
  )
  n = config.eval_sampling.n
  # pass@k needs k <= n samples per problem; with none left the table shows pass@1 and pass@n.
  ks = config_lib.eval_ks(config)
  comparison["ks"] = [k for k in ks if k <= n] or sorted({1, n})
  dropped = [k for k in ks if k > n]
  if dropped:
    print(f"[report] field 'eval.ks' values {dropped} exceed 'eval_sampling.n' = {n}: not reported")
  comparison["weak_sandbox"] = grid_runs.weak_sandbox_reasons(layout.eval_root, names)
  lines = []
  summarised = stage_dependencies.stages_read(("report",), config)
  if os.path.isfile(layout.teacher_diagnostic):
    with open(layout.teacher_diagnostic) as f:
      comparison["teacher_diagnostic"] = json.load(f)
    lines.append(format_diagnostic(comparison["teacher_diagnostic"]))
    summarised = config_lib.in_stage_order({*summarised, "self_distill"})  # It wrote the diagnostic.
  records = run_state.StageRecords(layout.workdir)
  comparison["code_versions"] = {name: records.code(name) for name in summarised}
  line = f"code: {code_version.by_code(comparison['code_versions'])}"
  earlier = {name: codes for name in summarised if (codes := records.earlier_code(name))}
  if earlier:  # Stages resumed by other code than started them.
    comparison["earlier_code_versions"] = earlier
    started = "; ".join(f"{name} started by {', '.join(map(code_version.describe, c))}" for name, c in earlier.items())
    line += f" (resumed: {started})"
  lines.append(line)
  notes = "\n".join(lines)
  if ctx.is_coordinator:
    write_comparison(comparison, layout.report_dir, notes)
  print(f"\n{report_text(comparison, notes)}report: {layout.report_dir}\n")
