"""The eval stage's resume: a candidate counts as finished only once every one of its files is whole."""

import types

import pytest
from test_evals_report import toy_result

from ssd_jax import process_group
from ssd_jax.config import base_config
from ssd_jax.evals.completions import write_completions
from ssd_jax.evals.protocol import DecodingSetting
from ssd_jax.evals.summary import summarize
from ssd_jax.stages import eval as eval_stage

SETTING = DecodingSetting(temperature=1.0)


def test_a_candidate_killed_before_its_done_file_is_scored_again_and_its_report_says_weak(tmp_path, monkeypatch):
  result = toy_result()
  summary = summarize(result, num_resamples=20) | {"sandbox": {"weak": "no user namespaces"}}
  scored = []

  def score_completions(*args, **kwargs):
    scored.append(1)
    return result, summary

  monkeypatch.setattr(eval_stage, "score_completions", score_completions)
  ctx = types.SimpleNamespace(
    config=base_config(),
    layout=types.SimpleNamespace(eval_root=str(tmp_path)),
    is_coordinator=True,
    sync=lambda name: None,
    sandbox_limits=None,
    sandbox_workers=1,
    sandbox_allow_weak=True,
    seed=0,
    process_group=process_group.single_process(),
  )
  prompts = types.SimpleNamespace(problems=[])
  out = tmp_path / "base" / "final" / SETTING.label / "dev"
  out.mkdir(parents=True)
  write_completions(str(out / eval_stage.COMPLETIONS_FILE), ["a"], [["x = 1"]])

  def evaluate():
    eval_stage.evaluate_candidate(ctx, None, prompts, "base", "final", SETTING, "dev")

  real_write = eval_stage.write_report

  def killed(*args):
    real_write(*args)
    raise KeyboardInterrupt

  monkeypatch.setattr(eval_stage, "write_report", killed)  # Killed after the report, before the done file.
  with pytest.raises(KeyboardInterrupt):
    evaluate()
  # The report is written with its notice in one write: no kill leaves one that hides the weak sandbox.
  assert (out / "samples.jsonl").is_file() and (out / "report.md").read_text().startswith("**WEAK SANDBOX**")
  monkeypatch.setattr(eval_stage, "write_report", real_write)
  evaluate()
  assert len(scored) == 2 and (out / "report.md").read_text().startswith("**WEAK SANDBOX**")
  evaluate()  # Finished: skipped.
  assert len(scored) == 2
