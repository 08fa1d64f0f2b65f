"""The whole SSD pipeline at micro size: every stage's outputs, the printed table, skipping finished stages."""

import glob
import json
import os

import jax
import numpy as np
import pytest
from config_files import ROOT, load_module
from pipeline_fixtures import micro_config, run_pipeline

from ssd_jax.pipeline import code_version
from ssd_jax.pipeline.checkpoint_export import export_step
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.stages import report as report_stage

STAGES = "pretrain,synthesize,sft,eval,report"


def _samples(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_micro_pipeline_end_to_end_then_skips_finished_stages(tmp_path, capsys):
  config = micro_config(STAGES)
  workdir = str(tmp_path)
  ctx = run_pipeline(config, workdir)
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

  with open(os.path.join(layout.eval_root, "split.json")) as f:
    split = json.load(f)
  assert len(split["dev"]) == len(split["test"]) == 2 and not set(split["dev"]) & set(split["test"])
  for name in ("base", "ssd"):
    with open(os.path.join(layout.eval_root, name, "selection.json")) as f:
      selection = json.load(f)
    checkpoints = ["final"] + (["step_2", "step_1"] if name == "ssd" else [])
    assert list(selection["dev_scores"]) == [f"{c}/T{t}_k20_p0.8" for c in checkpoints for t in ("0.7", "1.1")]
    # Test runs exactly the pass@1 and pass@n choices (eval.tune_pass_at_n), nothing else.
    assert list(selection["best_by"]) == ["pass@1", "pass@2"] and selection["best_by"]["pass@1"] == selection["best"]
    tested = glob.glob(os.path.join(layout.eval_root, name, "*", "*", "test"))
    assert sorted(os.path.relpath(os.path.dirname(t), os.path.join(layout.eval_root, name)) for t in tested) == sorted(
      set(selection["best_by"].values())
    )
    chosen = os.path.join(layout.eval_root, name, selection["best"])
    for part, ids in (("dev", split["dev"]), ("test", split["test"])):
      with open(os.path.join(chosen, part, "results.json")) as f:
        result = json.load(f)
      samples = _samples(os.path.join(chosen, part, "samples.jsonl"))
      assert result["num_problems"] == 2 and result["num_samples"] == 4 == len(samples)
      assert {s["task_id"] for s in samples} == set(ids) and result["part"] == part
      # pass@1 is the mean over problems of the fraction of passing samples: recount it from the verdicts.
      per_problem = {}
      for sample in samples:
        per_problem.setdefault(sample["task_id"], []).append(sample["passed"])
      expected = sum(sum(p) / len(p) for p in per_problem.values()) / len(per_problem)
      assert abs(result["pass_at_k"]["1"]["mean"] - expected) < 1e-9
  assert os.path.isfile(os.path.join(layout.model_at_step("ssd", 1), "config.json"))
  # The last training step, exported, is the final model itself.
  _, last = ctx.load_model(export_step(ctx, "ssd", 3))
  _, final = ctx.load_model(layout.model("ssd"))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(last), jax.tree.leaves(final), strict=True))
  for name in ("comparison.json", "comparison.txt", "pass_vs_temperature.png", "pass_at_k_selected.png"):
    assert os.path.isfile(os.path.join(layout.report_dir, name)), name
  with open(os.path.join(layout.report_dir, "comparison.txt")) as f:
    table = f.read().strip()
  assert table in out and "pass@2" in table and ("T=0.7" in table or "T=1.1" in table)
  assert table.endswith(f"code: pretrain, synthesize, sft, eval by {code_version.describe(code_version.current())}")

  markers = {n: os.path.getmtime(os.path.join(workdir, "stages", f"{n}.done.json")) for n in STAGES.split(",")}
  run_pipeline(config, workdir)
  again = capsys.readouterr().out
  for name in STAGES.split(","):
    assert f"[{name}] already done, skipping" in again
    assert os.path.getmtime(os.path.join(workdir, "stages", f"{name}.done.json")) == markers[name]

  # A run that measured its teacher reports the diagnostic under the table.
  diagnostic = {
    "problems": 2,
    "student_pass1": 0.25,
    "demonstration_problems": 2,
    "teacher_demonstration_pass1": 0.5,
    "student_pass1_on_demonstration_problems": 0.25,
    "feedback_problems": 0,
    "teacher_feedback_pass1": None,
    "student_pass1_on_feedback_problems": None,
    "warnings": [],
  }
  os.makedirs(os.path.dirname(layout.teacher_diagnostic), exist_ok=True)
  with open(layout.teacher_diagnostic, "w") as f:
    json.dump(diagnostic, f)
  ctx.config.eval.ks = "1,2,8"  # 8 > eval_sampling.n = 2: named, and not listed among the reported ks.
  report_stage.run(ctx)
  line = "teacher diagnostic on 2 problems (pass@1, %): student 25.0; teacher + demonstration 50.0"
  printed = capsys.readouterr().out
  assert line in printed and "field 'eval.ks' values [8] exceed 'eval_sampling.n' = 2: not reported" in printed
  with open(os.path.join(layout.report_dir, "comparison.txt")) as f:
    assert line in f.read()
  with open(os.path.join(layout.report_dir, "comparison.json")) as f:
    comparison = json.load(f)
  assert comparison["teacher_diagnostic"] == diagnostic and comparison["ks"] == [1, 2]
  assert comparison["differences"]["ssd"]["pass@n_at_own_best"]["num_problems"] == 2
  # The sweep's table reads this file (its tests use a stand-in): each model's dev numbers at its selection.
  headline = load_module(ROOT / "launch" / "sweep.py", "sweep").headline(comparison)
  for model, entry in comparison["models"].items():
    (chosen,) = [c for c in entry["candidates"] if c["key"] == entry["selected"]["key"]]
    assert headline[f"{model} dev pass@1"] == 100 * chosen["dev"]["pass@1"]
