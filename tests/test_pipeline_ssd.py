"""The whole SSD pipeline at micro size: every stage's outputs, the printed table, skipping finished stages."""

import json
import os

from pipeline_fixtures import micro_config, run_pipeline

from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.stages.report import pass_at_k_table

STAGES = "pretrain,synthesize,sft,eval,report"


def _samples(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_micro_pipeline_end_to_end_then_skips_finished_stages(tmp_path, capsys):
  config = micro_config(STAGES)
  workdir = str(tmp_path)
  run_pipeline(config, workdir)
  out = capsys.readouterr().out
  layout = RunLayout(workdir)

  for name in STAGES.split(","):
    assert os.path.isfile(os.path.join(workdir, "stages", f"{name}.done.json")), name
  for name in ("base", "ssd"):
    assert os.path.isfile(os.path.join(layout.model(name), "tokenizer.json"))
  with open(layout.synthesis_summary) as f:
    summary = json.load(f)
  assert summary["records"] == 8 and sum(summary["degeneracy_filter"].values()) == 8
  assert summary["decoding"] == {"temperature": 1.6, "top_k": 20, "top_p": 0.8, "min_p": 0.0}

  for name in ("base", "ssd"):
    with open(os.path.join(layout.eval_dir(name), "results.json")) as f:
      result = json.load(f)
    samples = _samples(os.path.join(layout.eval_dir(name), "samples.jsonl"))
    assert result["num_problems"] == 4 and result["num_samples"] == 8 == len(samples)
    # pass@1 is the mean over problems of the fraction of passing samples: recount it from the verdicts.
    per_problem = {}
    for sample in samples:
      per_problem.setdefault(sample["task_id"], []).append(sample["passed"])
    expected = sum(sum(p) / len(p) for p in per_problem.values()) / len(per_problem)
    assert abs(result["pass_at_k"]["1"]["mean"] - expected) < 1e-9
    assert len(_samples(os.path.join(layout.eval_dir(name), "completions.jsonl"))) == 8
  for name in ("comparison.md", "comparison_pass_at_k.png", "comparison.json", "pass_at_k.txt"):
    assert os.path.isfile(os.path.join(layout.report_dir, name)), name
  with open(os.path.join(layout.report_dir, "pass_at_k.txt")) as f:
    table = f.read().strip()
  assert table in out and "pass@2" in table and "base" in table and "ssd" in table

  markers = {n: os.path.getmtime(os.path.join(workdir, "stages", f"{n}.done.json")) for n in STAGES.split(",")}
  run_pipeline(config, workdir)
  again = capsys.readouterr().out
  for name in STAGES.split(","):
    assert f"[{name}] already done, skipping" in again
    assert os.path.getmtime(os.path.join(workdir, "stages", f"{name}.done.json")) == markers[name]


def _summary(p1, p4, programs=2.5):
  return {
    "pass_at_k": {"1": {"mean": p1}, "4": {"mean": p4}},
    "diversity": {"mean_distinct_programs": programs, "mean_distinct_behaviours": 1.25},
  }


def test_pass_at_k_table_reports_the_difference():
  table = pass_at_k_table({"base": _summary(0.25, 0.5), "ssd": _summary(0.375, 0.5)})
  rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
  assert table.splitlines()[0].split() == ["base", "ssd", "ssd-base"]
  assert rows["pass@1"] == ["25.0", "37.5", "+12.5"]
  assert rows["pass@4"] == ["50.0", "50.0", "+0.0"]
  assert rows["programs"] == ["2.50", "2.50"]


def test_pass_at_k_table_compares_every_model_with_the_first():
  summaries = {
    "base": _summary(0.25, 0.5),
    "ssd": _summary(0.375, 0.5),
    "sdsd": _summary(0.2, 0.625, 1.5),
    "sdpo": {
      "pass_at_k": {"1": {"mean": 0.5}},
      "diversity": {"mean_distinct_programs": 3.0, "mean_distinct_behaviours": 2.0},
    },
  }
  table = pass_at_k_table(summaries)
  rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
  assert table.splitlines()[0].split() == ["base", "ssd", "sdsd", "sdpo", "ssd-base", "sdsd-base", "sdpo-base"]
  assert rows["pass@1"] == ["25.0", "37.5", "20.0", "50.0", "+12.5", "-5.0", "+25.0"]
  assert rows["pass@4"] == ["50.0", "50.0", "62.5", "-", "+0.0", "+12.5", "-"]
  assert rows["programs"] == ["2.50", "2.50", "1.50", "3.00"]
  assert rows["behaviours"] == ["1.25", "1.25", "1.25", "2.00"]
