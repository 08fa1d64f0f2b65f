"""Writes a run's numbers as JSON, a Markdown table, and pass@k plots; compares several runs."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping

from ssd_jax.atomic_write import atomic_open
from ssd_jax.evals.evaluate import EvalResult
from ssd_jax.evals.pass_at_k import paired_difference, paired_difference_text
from ssd_jax.evals.summary import difficulty_sort_key, weak_sandbox_notice

SUMMARY_FILE = "results.json"
# The files `write_report` writes, by kind; samples only when given the evaluation.
REPORT_FILES = {
  "json": SUMMARY_FILE,
  "markdown": "report.md",
  "plot": "pass_at_k.png",
  "plot_by_difficulty": "pass_at_k_by_difficulty.png",
  "samples": "samples.jsonl",
}


def pyplot():
  """matplotlib's pyplot on the file-only Agg backend, imported when a plot is drawn (not at every start-up)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def partial_notice(summary: Mapping) -> str | None:
  """The line a run over part of its problems carries; None when the completions covered them all.

  Coverage is set by the command line, whose completions file may cover some problems only.
  """
  coverage = summary.get("coverage")
  if coverage and coverage["with_completions"] < coverage["problems"]:
    return (
      f"**PARTIAL**: completions covered {coverage['with_completions']} of {coverage['problems']} problems; "
      "every number here is over those alone."
    )
  return None


def _percent(x: float) -> str:
  return f"{100 * x:.1f}"


def _pass_at_k_cells(block: Mapping[str, Mapping[str, float]]) -> list[str]:
  return [f"{_percent(v['mean'])} [{_percent(v['ci_low'])}, {_percent(v['ci_high'])}]" for v in block.values()]


def _correct_diversity_lines(block: Mapping | None) -> list[str]:
  if not block:
    return []

  def cell(value):
    return "-" if value is None else f"{value:.2f}"

  m = block["m"]
  return [
    f"## Correct-solution diversity (problems solved >= {m} times: {block['num_problems']})",
    "",
    f"Expected distinct solutions among {m} correct samples of a problem: by normalised AST, by results on "
    "extra inputs, and known solutions of the task found.",
    "",
    "| AST | behaviour | known | known share | AST (all correct samples) |",
    "|---|---|---|---|---|",
    f"| {cell(block['ast'])} | {cell(block['behaviour'])} | {cell(block['known'])} | {cell(block['known_share'])} | "
    f"{cell(block['ast_all'])} |",
    "",
  ]


def markdown_report(summary: Mapping, name: str = "run") -> str:
  """A Markdown page: pass@k (95% bootstrap CI, %), per difficulty, correct-solution diversity, diversity
  over all samples, verdicts."""
  ks = summary["ks"]
  header = "| | problems | " + " | ".join(f"pass@{k}" for k in ks) + " |"
  rule = "|---" * (len(ks) + 2) + "|"
  rows = [f"| all | {summary['num_problems']} | " + " | ".join(_pass_at_k_cells(summary["pass_at_k"])) + " |"]
  for difficulty, block in summary["by_difficulty"].items():
    rows.append(
      f"| {difficulty} | {block['num_problems']} | " + " | ".join(_pass_at_k_cells(block["pass_at_k"])) + " |"
    )
  diversity = summary["diversity"]
  n = summary["samples_per_problem"]
  # The weak-sandbox line heads the page in the same write, so no kill leaves a report without it.
  weak, partial = weak_sandbox_notice(summary), partial_notice(summary)
  lines = [
    *([weak, ""] if weak else []),
    f"# Evaluation: {name}",
    "",
    *([partial, ""] if partial else []),
    f"{summary['num_problems']} problems, {n['min']}-{n['max']} samples each; "
    f"pass@k in %, 95% bootstrap interval over problems.",
    "",
    header,
    rule,
    *rows,
    "",
    *_correct_diversity_lines(summary.get("correct_diversity")),
    "## Diversity over all samples (mean per problem; falls as accuracy rises, see above)",
    "",
    "| distinct programs | distinct behaviours | pass@n - pass@1 |",
    "|---|---|---|",
    f"| {diversity['mean_distinct_programs']:.2f} | {diversity['mean_distinct_behaviours']:.2f} | "
    f"{_percent(diversity['mean_pass_at_k_gain_1_to_n'])} |",
    "",
    "## Test verdicts",
    "",
    "| verdict | count |",
    "|---|---|",
    *[f"| {v} | {c} |" for v, c in summary["verdict_counts"].items()],
    "",
  ]
  return "\n".join(lines)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":")


def run_style(index: int) -> dict:
  """Colour, marker and line style of the index-th run in a plot, so runs stay apart in grey-scale too."""
  return {
    "color": f"C{index}",
    "marker": MARKERS[index % len(MARKERS)],
    "linestyle": LINE_STYLES[index % len(LINE_STYLES)],
  }


def _plot_curve(ax, block, label, offset=1.0, **style):
  ks = [int(k) * offset for k in block]
  means = [100 * v["mean"] for v in block.values()]
  lows = [100 * (v["mean"] - v["ci_low"]) for v in block.values()]
  highs = [100 * (v["ci_high"] - v["mean"]) for v in block.values()]
  ax.errorbar(ks, means, yerr=[lows, highs], capsize=3, label=label, **style)


def _finish_axes(ax, title):
  ax.set_xscale("log", base=2)
  ax.set_xlabel("k")
  ax.set_ylabel("pass@k (%)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()


def plot_pass_at_k(runs: Mapping[str, Mapping], path: pathlib.Path, by_difficulty: bool = False) -> None:
  """Saves pass@k curves of one or more runs (overall, or one panel per difficulty, easy / medium / hard
  on one y-scale) to a PNG. Runs differ in colour, marker and line style and are drawn slightly apart on
  the (log) k axis, so no curve hides another."""
  panels = ["all"]
  if by_difficulty:
    panels = sorted({d for s in runs.values() for d in s["by_difficulty"]}, key=difficulty_sort_key)
  plt = pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, sharey=True)
  for ax, panel in zip(axes[0], panels):
    for index, (name, summary) in enumerate(runs.items()):
      block = summary["pass_at_k"] if panel == "all" else summary["by_difficulty"].get(panel, {}).get("pass_at_k")
      if block:
        offset = 2 ** (0.04 * (index - (len(runs) - 1) / 2))
        _plot_curve(ax, block, name, offset, **run_style(index))
    _finish_axes(ax, "pass@k" if panel == "all" else f"pass@k: {panel}")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def samples_records(result: EvalResult):
  """One JSON-ready dict per sample: raw completion, code, verdicts and feedback."""
  for problem in result.problems:
    for index, sample in enumerate(problem.samples):
      yield {
        "task_id": problem.task_id,
        "sample": index,
        "passed": sample.passed,
        "completion": sample.completion,
        "code": sample.code,
        "feedback": sample.feedback,
        "tests": [{**dataclasses.asdict(run), "verdict": run.verdict.value} for run in sample.tests],
      }


def write_report(
  summary: Mapping, out_dir: str | pathlib.Path, name: str = "run", result: EvalResult | None = None
) -> dict[str, pathlib.Path]:
  """Writes results.json, report.md, pass_at_k.png, pass_at_k_by_difficulty.png (and samples.jsonl).

  Returns:
    The written paths by kind.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {kind: out / file for kind, file in REPORT_FILES.items() if kind != "samples" or result is not None}
  with atomic_open(paths["json"]) as f:
    json.dump({"name": name, **summary}, f, indent=2)
  with atomic_open(paths["markdown"]) as f:
    f.write(markdown_report(summary, name))
  plot_pass_at_k({name: summary}, paths["plot"])
  plot_pass_at_k({name: summary}, paths["plot_by_difficulty"], by_difficulty=True)
  if result is not None:
    with atomic_open(paths["samples"], encoding="utf-8") as f:
      for record in samples_records(result):
        f.write(json.dumps(record) + "\n")
  return paths


def _pass_at_1_by_task(summary: Mapping) -> dict[str, float]:
  return {p["task_id"]: p["pass_at_k"]["1"] for p in summary["per_problem"]}


def compare_reports(summaries: Mapping[str, Mapping], out_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
  """Side-by-side Markdown table and pass@k plots for two or more runs over the same problems, with each
  run's pass@1 minus the first run's, paired over problems (95% t interval).

  Raises:
    ValueError: fewer than two runs, or runs over different problems.
  """
  if len(summaries) < 2:
    raise ValueError(f"compare_reports: need at least two runs, got {len(summaries)}")
  by_task = {name: _pass_at_1_by_task(s) for name, s in summaries.items()}
  (first, reference), *others = by_task.items()
  for name, values in others:
    if set(values) != set(reference):
      differ = sorted(set(values) ^ set(reference))
      raise ValueError(
        f"runs {first!r} ({len(reference)} problems) and {name!r} ({len(values)}) are over different problems "
        f"({len(differ)} in one only, e.g. {differ[:3]}); compare runs over the same problems"
      )
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  ks = sorted({int(k) for s in summaries.values() for k in s["pass_at_k"]})
  tasks = sorted(reference)
  # What each run's own report says about its verdicts or coverage, the comparison says too.
  notices = [
    f"- {name}: {n}" for name, s in summaries.items() for n in (weak_sandbox_notice(s), partial_notice(s)) if n
  ]
  lines = [
    "# Comparison",
    "",
    *([*notices, ""] if notices else []),
    f"W/L: problems a run does better/worse on than {first} (pass@1); p: exact two-sided sign test.",
    "",
    "| run | problems | "
    + " | ".join(f"pass@{k}" for k in ks)
    + f" | pass@1 - {first} [95% CI] W/L p | distinct programs | distinct behaviours |",
    "|---" * (len(ks) + 5) + "|",
  ]
  for name, s in summaries.items():
    cells = [_percent(s["pass_at_k"][str(k)]["mean"]) if str(k) in s["pass_at_k"] else "-" for k in ks]
    difference = "-"
    if name != first:
      paired = paired_difference([by_task[name][t] for t in tasks], [reference[t] for t in tasks])
      difference = paired_difference_text(paired, counts=True)
    d = s["diversity"]
    lines.append(
      f"| {name} | {s['num_problems']} | "
      + " | ".join(cells)
      + f" | {difference} | {d['mean_distinct_programs']:.2f} | {d['mean_distinct_behaviours']:.2f} |"
    )
  paths = {
    "markdown": out / "comparison.md",
    "plot": out / "comparison_pass_at_k.png",
    "plot_by_difficulty": out / "comparison_pass_at_k_by_difficulty.png",
  }
  paths["markdown"].write_text("\n".join(lines) + "\n")
  plot_pass_at_k(summaries, paths["plot"])
  plot_pass_at_k(summaries, paths["plot_by_difficulty"], by_difficulty=True)
  return paths
