"""The `report` stage: every evaluated model side by side (pass@k curves on one plot, diversity), table on stdout."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from ssd_jax import config as config_lib
from ssd_jax.evals import compare_reports
from ssd_jax.evals.report import SUMMARY_FILE
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.layout import RunLayout


def load_summaries(layout: RunLayout, names: tuple[str, ...]) -> dict[str, dict]:
  """The `results.json` of each evaluated model, by name.

  Raises:
    FileNotFoundError: naming the model whose evaluation is missing.
  """
  summaries = {}
  for name in names:
    path = os.path.join(layout.eval_dir(name), SUMMARY_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"no evaluation of model {name!r} at {path}; run the 'eval' stage first")
    with open(path) as f:
      summaries[name] = json.load(f)
  return summaries


def pass_at_k_table(summaries: Mapping[str, Mapping]) -> str:
  """A plain-text table: one row per k, one column per model (pass@k in %), then each later model minus the first.

  The first model is the reference (the base): a column `<model>-<first>` follows for every other model.
  Two diversity rows (mean distinct programs and behaviours per problem) close the table.
  """
  names = list(summaries)
  reference, others = names[0], names[1:]
  ks = sorted({int(k) for s in summaries.values() for k in s["pass_at_k"]})
  delta_names = [f"{n}-{reference}" for n in others]
  width = max(10, *(len(n) + 2 for n in names + delta_names))

  def mean(name, key):
    block = summaries[name]["pass_at_k"].get(key)
    return 100 * block["mean"] if block else None

  def cell(value, signed=False):
    return "-" if value is None else (f"{value:+.1f}" if signed else f"{value:.1f}")

  lines = [f"{'':<10}" + "".join(f"{n:>{width}}" for n in names + delta_names)]
  for k in ks:
    key = str(k)
    row = f"{'pass@' + key:<10}" + "".join(f"{cell(mean(n, key)):>{width}}" for n in names)
    first = mean(reference, key)
    for n in others:
      value = mean(n, key)
      row += f"{cell(None if first is None or value is None else value - first, signed=True):>{width}}"
    lines.append(row)
  for label, field in (("programs", "mean_distinct_programs"), ("behaviours", "mean_distinct_behaviours")):
    lines.append(f"{label:<10}" + "".join(f"{summaries[n]['diversity'][field]:>{width}.2f}" for n in names))
  return "\n".join(lines)


def run(ctx: RunContext) -> None:
  """Writes `report/comparison.{md,json}` and the comparison plots; prints the pass@k table."""
  config, layout = ctx.config, ctx.layout
  summaries = load_summaries(layout, config_lib.eval_model_names(config))
  table = pass_at_k_table(summaries)
  if ctx.is_coordinator:
    os.makedirs(layout.report_dir, exist_ok=True)
    if len(summaries) > 1:
      compare_reports(summaries, layout.report_dir)
    compact = {
      name: {key: s[key] for key in ("num_problems", "ks", "pass_at_k", "by_difficulty", "diversity")}
      for name, s in summaries.items()
    }
    with open(os.path.join(layout.report_dir, "comparison.json"), "w") as f:
      json.dump(compact, f, indent=2)
    with open(os.path.join(layout.report_dir, "pass_at_k.txt"), "w") as f:
      f.write(table + "\n")
  n = next(iter(summaries.values()))["samples_per_problem"]["max"]
  problems = next(iter(summaries.values()))["num_problems"]
  print(
    f"\npass@k (%), {problems} problems x {n} samples at T={config.eval_sampling.temperature} "
    f"(diversity: mean distinct programs / behaviours per problem)"
  )
  print(table)
  print(f"report: {layout.report_dir}\n")
