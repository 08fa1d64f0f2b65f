"""Writes a tuned comparison (`comparison.compare_models`): the stdout table, Markdown, JSON and plots.

Plots: pass@1 and pass@n against T_eval for every model (dev split, chosen setting starred), the
selected candidates' pass@k curves k = 1..n, and pass@1 / pass@n per difficulty (easy, medium, hard on
one y-scale). Models are told apart by colour, marker and line style and drawn slightly apart on x,
so no line hides another.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping

from ssd_jax.atomic_write import atomic_open
from ssd_jax.evals.pass_at_k import paired_difference_text, signed_text
from ssd_jax.evals.report import pyplot, run_style


def _pct(x: float | None, signed: bool = False) -> str:
  if x is None:
    return "-"
  return signed_text(100 * x, 1) if signed else f"{100 * x:.1f}"


# Wide enough for "+0.00 (no problem differs) (12)" and "+0.00 [-0.50, +0.50] (12)" with a gap.
_DIVERSITY_CELL = 34


def _cell(value: float | None, width: int, count: int | None = None) -> str:
  """`value` to 2 decimals, right-aligned; with `count`, the problems it is a mean over follow in parentheses."""
  text = "-" if value is None else f"{value:.2f}" + ("" if count is None else f" ({count})")
  return f"{text:>{width}}"


def _difference_cell(difference: Mapping) -> str:
  """A paired difference and, in parentheses, its problem count, left-aligned in a diversity column."""
  text = paired_difference_text(difference, 1.0, 2) + " (" + str(difference["num_problems"]) + ")"
  return f"{text:<{_DIVERSITY_CELL}}"


def _setting_text(selected: Mapping) -> str:
  s = selected["setting"]
  name = f"{s['name']}: " if s["name"] else ""
  checkpoint = "" if selected["checkpoint"] == "final" else f" @{selected['checkpoint']}"
  return f"{name}T={s['temperature']:g} top_k={s['top_k']} top_p={s['top_p']:g}{checkpoint}"


def _pass_at_n_at_own_best(comparison: Mapping, width: int, n: int) -> list[str]:
  """Rows of test pass@n with every model (the reference too) at its own dev-best candidate for pass@n."""
  models, reference = comparison["models"], comparison["reference"]
  settings = {name: _setting_text(block["selected_at_n"]) for name, block in models.items()}
  setting_width = max(len(s) for s in settings.values()) + 2
  lines = [
    "",
    f"pass@{n} with each model at its own best for pass@{n} (chosen on dev by pass@{n}; the rows above use the "
    f"{comparison['metric']} choice):",
    f"{'model':<{width}}{'setting (chosen on dev)':<{setting_width}}{'pass@' + str(n):>9}"
    f"   {'pass@' + str(n) + ' - ' + reference + ' [95% CI] W/L p'}",
  ]
  for name, block in models.items():
    row = f"{name:<{width}}{settings[name]:<{setting_width}}{_pct(block['selected_at_n']['test_pass_at_n']['mean']):>9}"
    if name in comparison["differences"]:
      row += f"   {paired_difference_text(comparison['differences'][name]['pass@n_at_own_best'], counts=True)}"
    lines.append(row)
  return lines


def _grid_edge_notes(comparison: Mapping, n: int) -> list[str]:
  """A line for each choice at the coldest or hottest temperature of its model's grid: the dev score beyond
  it was never measured, so the model's best may lie outside the grid (an untuned base inflates a gain)."""
  notes = []
  for name, block in comparison["models"].items():
    temperatures = sorted({c["setting"]["temperature"] for c in block["candidates"]})
    if len(temperatures) < 2:
      continue
    for key, metric in (("selected", comparison["metric"]), ("selected_at_n", f"pass@{n}")):
      t = block[key]["setting"]["temperature"] if key in block else None
      if t is None or temperatures[0] < t < temperatures[-1] or t == 0:  # Nothing is colder than greedy.
        continue
      edge, beyond = ("coldest", "colder") if t == temperatures[0] else ("hottest", "hotter")
      notes.append(
        f"Grid edge: {name}'s {metric} choice (T={t:g}) is the {edge} temperature it was tried at; a {beyond} "
        "one was not measured and may be better on dev (widen eval.grid.temperatures)."
      )
  return notes


def comparison_table(comparison: Mapping) -> str:
  """Plain text for stdout: each model at its dev-chosen setting (named in the table), test pass@k,
  paired differences from the reference with 95% intervals, and correct-solution diversity.

  The pass@k columns are k = 1, n and the comparison's 'ks' (the run's eval.ks), or powers of two without it.
  A comparison whose runs were graded in a weak sandbox ('weak_sandbox': their reasons) says so first; a
  choice at the edge of its model's temperature grid is named below the rows.
  """
  split, reference, m = comparison["split"], comparison["reference"], comparison["diversity_m"]
  models = comparison["models"]
  ks = sorted({int(k) for block in models.values() for k in block["test"]["pass_at_k_curve"]})
  n = ks[-1]
  asked = comparison.get("ks")
  shown_ks = [k for k in ks if k in (1, n) or (k in asked if asked else (k & (k - 1)) == 0)]
  width = max(len(name) for name in models) + 2
  settings = {name: _setting_text(block["selected"]) for name, block in models.items()}
  setting_width = max(len(s) for s in settings.values()) + 2
  weak = comparison.get("weak_sandbox")
  lines = [f"WEAK SANDBOX: verdicts were obtained without full isolation ({'; '.join(weak)})."] if weak else []
  lines += [
    f"Test split: {split['test']} problems x {n} samples. Each model's decoding (and checkpoint) was chosen by "
    f"{comparison['metric']} on the {split['dev']} dev problems (split seed {split['seed']}); pass@k in %. W/L: "
    f"test problems a model does better/worse on than {reference}; p: exact two-sided sign test; 95% CI: "
    "Student-t over the problems' paired differences.",
    f"{'model':<{width}}{'setting (chosen on dev)':<{setting_width}}"
    + "".join(f"{'pass@' + str(k):>9}" for k in shown_ks)
    + f"   {'pass@1 - ' + reference + ' [95% CI] W/L p':<40}{'pass@' + str(n) + ' - ' + reference + ' [95% CI] W/L p'}",
  ]
  for name, block in models.items():
    curve = block["test"]["pass_at_k_curve"]
    row = f"{name:<{width}}{settings[name]:<{setting_width}}" + "".join(
      f"{_pct(curve[str(k)]['mean']):>9}" for k in shown_ks
    )
    if name in comparison["differences"]:
      d = comparison["differences"][name]
      row += (
        f"   {paired_difference_text(d['pass@1'], counts=True):<40}{paired_difference_text(d['pass@n'], counts=True)}"
      )
    lines.append(row)
  notes = _grid_edge_notes(comparison, n)
  lines += ["", *notes] if notes else []
  if all("selected_at_n" in block for block in models.values()):
    lines += _pass_at_n_at_own_best(comparison, width, n)
  lines += [
    "",
    f"Correct-solution diversity (test): expected distinct solutions among {m} correct samples of a problem, "
    f"over problems solved >= {m} times",
    f"(differences: only problems both models solved >= {m} times). AST: normalised programs; behaviour: "
    "results on extra inputs; known: the task's listed solutions. A model's own means are over its own "
    "problems (the count, in parentheses where a measure lacks data on some), so they do not compare across "
    "models as the paired differences do.",
    f"{'model':<{width}}{'problems':>9}{'AST':>12}{'behaviour':>14}{'known':>12}   "
    f"{'AST - ' + reference:<{_DIVERSITY_CELL}}{'behaviour - ' + reference:<{_DIVERSITY_CELL}}"
    f"{'known - ' + reference}",
  ]
  for name, block in models.items():
    div = block["test"]["diversity"]
    # Records written before the counts were kept lack them.
    counts = {k: v for k, v in div.get("measured", {}).items() if v != div["num_problems"]}
    row = f"{name:<{width}}{div['num_problems']:>9}{_cell(div['ast'], 12, counts.get('ast'))}"
    row += _cell(div["behaviour"], 14, counts.get("behaviour")) + _cell(div["known"], 12, counts.get("known"))
    if name in comparison["differences"]:
      d = comparison["differences"][name]
      row += "   " + "".join(_difference_cell(d["diversity_" + f]) for f in ("ast", "behaviour", "known")).rstrip()
    lines.append(row)
  return "\n".join(lines)


def _offsets(count: int, spread: float) -> list[float]:
  return [spread * (i - (count - 1) / 2) for i in range(count)]


def plot_temperature_curves(comparison: Mapping, path: pathlib.Path) -> None:
  """pass@1 and pass@n on the dev split (where every candidate ran) against T_eval, one line per model
  and truncation at the chosen checkpoint; the chosen setting is starred; named settings are points."""
  models = comparison["models"]
  temps = sorted({c["setting"]["temperature"] for b in models.values() for c in b["candidates"]})
  spread = 0.012 * (temps[-1] - temps[0] if len(temps) > 1 else 1.0)
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for index, ((name, block), dx) in enumerate(zip(models.items(), _offsets(len(models), spread))):
    chosen = block["selected"]["key"]
    checkpoint = block["selected"]["checkpoint"]
    lines: dict[tuple, list] = {}
    for c in block["candidates"]:
      if c["checkpoint"] == checkpoint:
        s = c["setting"]
        lines.setdefault((s["name"], s["top_k"], s["top_p"]), []).append(c)
    for ax, metric in zip(axes, ("pass@1", "pass@n")):
      for (named, top_k, top_p), group in lines.items():
        group = sorted(group, key=lambda c: c["setting"]["temperature"])
        xs = [c["setting"]["temperature"] + dx for c in group]
        ys = [100 * c["dev"][metric] for c in group]
        label = f"{name} ({named})" if named else f"{name} k={top_k} p={top_p:g}"
        style = run_style(index) | ({"marker": "X", "markersize": 9, "linestyle": ""} if named else {})
        ax.plot(xs, ys, label=label, **style)
        for c, x, y in zip(group, xs, ys):
          if c["key"] == chosen:
            ax.plot([x], [y], marker="*", markersize=16, color=f"C{index}", markeredgecolor="black", linestyle="")
  n = next(iter(models.values()))["candidates"][0]["dev"]["n"]
  for ax, title in zip(axes, ("pass@1", f"pass@{n}")):
    ax.set_xlabel("T_eval")
    ax.set_title(f"{title} on the dev split (star: chosen setting)")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("%")
  axes[1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_selected_curves(comparison: Mapping, path: pathlib.Path) -> None:
  """Test pass@k for k = 1..n of each model's chosen candidate, with 95% intervals."""
  models = comparison["models"]
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4.2))
  for index, ((name, block), dx) in enumerate(zip(models.items(), _offsets(len(models), 0.06))):
    curve = block["test"]["pass_at_k_curve"]
    ks = [int(k) for k in curve]
    means = [100 * v["mean"] for v in curve.values()]
    errors = [
      [100 * (v["mean"] - v["ci_low"]) for v in curve.values()],
      [100 * (v["ci_high"] - v["mean"]) for v in curve.values()],
    ]
    label = f"{name} ({_setting_text(block['selected'])})"
    ax.errorbar([k + dx for k in ks], means, yerr=errors, capsize=3, label=label, **run_style(index))
  ax.set_xlabel("k")
  ax.set_ylabel("pass@k (%), test split")
  ax.set_title("pass@k at each model's chosen setting")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_by_difficulty(comparison: Mapping, path: pathlib.Path) -> None:
  """pass@1 and pass@n per difficulty (easy, medium, hard), one panel each on one y-scale."""
  models = comparison["models"]
  labels = list(next(iter(models.values()))["test"]["by_difficulty"])
  plt = pyplot()
  fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 4), sharey=True, squeeze=False)
  width = 0.8 / len(models)
  for ax, label in zip(axes[0], labels):
    for index, (name, block) in enumerate(models.items()):
      cell = block["test"]["by_difficulty"].get(label)
      if cell:
        xs = [i + (index - (len(models) - 1) / 2) * width for i in range(2)]
        ax.bar(xs, [100 * cell["pass@1"], 100 * cell["pass@n"]], width, color=f"C{index}", label=name)
    count = next(iter(models.values()))["test"]["by_difficulty"][label]["num_problems"]
    ax.set_xticks([0, 1], ["pass@1", "pass@n"])
    ax.set_title(f"{label} ({count} test problems)")
    ax.grid(alpha=0.3, axis="y")
  axes[0][0].set_ylabel("%")
  axes[0][-1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report_text(comparison: Mapping, notes: str = "") -> str:
  """The report as printed and as comparison.txt: the table, then `notes` (e.g. the teacher diagnostic)."""
  return comparison_table(comparison) + "\n" + (f"\n{notes}\n" if notes else "")


def write_comparison(comparison: Mapping, out_dir: str | pathlib.Path, notes: str = "") -> dict[str, pathlib.Path]:
  """Writes comparison.json, comparison.txt (the stdout table, then `notes`) and the three plots; returns the paths."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {
    "json": out / "comparison.json",
    "table": out / "comparison.txt",
    "temperature_plot": out / "pass_vs_temperature.png",
    "pass_at_k_plot": out / "pass_at_k_selected.png",
    "difficulty_plot": out / "pass_by_difficulty.png",
  }
  with atomic_open(paths["json"]) as f:
    json.dump(comparison, f, indent=2)
  with atomic_open(paths["table"]) as f:
    f.write(report_text(comparison, notes))
  plot_temperature_curves(comparison, paths["temperature_plot"])
  plot_selected_curves(comparison, paths["pass_at_k_plot"])
  plot_by_difficulty(comparison, paths["difficulty_plot"])
  return paths
