"""The report names the code that ran each stage it compares (the comparison itself: tests/test_pipeline_ssd.py)."""

import json
import types

from pipeline_fixtures import micro_config

from ssd_jax.evals.splits import record_split, split_problems
from ssd_jax.pipeline import run_state
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.stages import report

_OLD = {"version": "0.0.1", "revision": "fedcba9876543210fedcba9876543210fedcba98"}
_NEW = {"version": "0.0.2"}


def test_the_report_names_the_code_of_the_stages_it_compares(tmp_path, monkeypatch):
  layout = RunLayout(str(tmp_path))
  record_split(layout.eval_split_file, split_problems([f"t/{i}" for i in range(4)]))
  records = run_state.StageRecords(str(tmp_path))
  for name, code in (("pretrain", _OLD), ("sft", None), ("self_distill", _OLD), ("eval", _NEW), ("synthesize", _NEW)):
    records.write(name, "done", {} if code is None else {"code": code})  # None: written before the code was kept.
  written = {}
  monkeypatch.setattr(report.grid_runs, "load_recorded_candidates", lambda root, name: [])
  monkeypatch.setattr(report, "compare_models", lambda *args, **kwargs: {})
  monkeypatch.setattr(
    report, "write_comparison", lambda comparison, out, notes: written.update(notes=notes, **comparison)
  )
  monkeypatch.setattr(report, "report_text", lambda comparison, notes: notes)
  config = micro_config("report")
  config.eval.models = "base,ssd"
  ctx = types.SimpleNamespace(config=config, layout=layout, seed=0, is_coordinator=True)

  report.run(ctx)
  # eval and the stages it read, directly or through others; not self_distill, whose models it did not evaluate.
  assert written["code_versions"] == {"pretrain": _OLD, "synthesize": _NEW, "sft": None, "eval": _NEW}
  assert written["notes"] == (
    "code: pretrain by ssd_jax 0.0.1 (git fedcba987654); synthesize, eval by ssd_jax 0.0.2; sft by code that did "
    "not record its version"
  )
  # The teacher diagnostic the self_distill stage wrote brings that stage in.
  (tmp_path / "self_distill").mkdir()
  with open(layout.teacher_diagnostic, "w") as f:
    json.dump({"problems": 0, "student_pass1": None, "warnings": []}, f)
  monkeypatch.setattr(report, "format_diagnostic", lambda diagnostic: "diagnostic")
  report.run(ctx)
  assert list(written["code_versions"]) == ["pretrain", "synthesize", "sft", "self_distill", "eval"]
  assert written["notes"].startswith("diagnostic\ncode: pretrain, self_distill by ssd_jax 0.0.1 (git fedcba987654); ")
  assert "earlier_code_versions" not in written
  # A stage resumed by other code than started it says which.
  records.write("sft", "done", {"code": _NEW, "earlier_code": [_OLD]})
  report.run(ctx)
  assert written["earlier_code_versions"] == {"sft": [_OLD]}
  assert written["notes"].endswith("(resumed: sft started by ssd_jax 0.0.1 (git fedcba987654))")
