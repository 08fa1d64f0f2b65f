"""A stage never runs on, or stays done over, outputs its upstream stages no longer hold, named in the run or not.

The stages here are stand-ins that write marker files where the real ones write their outputs.
"""

import json
import os

import pytest
from pipeline_fixtures import micro_config

from ssd_jax import config as config_lib
from ssd_jax.config.schema import comma_list
from ssd_jax.evals.splits import record_split, split_problems
from ssd_jax.pipeline import run_state, runner, stage_dependencies
from ssd_jax.pipeline.content_signature import content_signature
from ssd_jax.pipeline.layout import RunLayout

_OUTPUTS = {
  "pretrain": ("tokenizer", "pretrain", "models/base"),
  "synthesize": ("synthesize",),
  "sft": ("sft", "models/ssd"),
  "report": ("report",),
}


class _Killed(Exception):
  """A stage killed half-way."""


def _stages(ran, killed=()):
  """Stand-in stages: each writes the config values it ran with under its outputs, and appends its name to `ran`."""

  def stage(name):
    def run(ctx):
      ran.append(name)
      paths = list(_OUTPUTS.get(name, ()))
      if name == "self_distill":
        paths += ["self_distill", *(f"models/{m}" for m in comma_list(ctx.config.self_distill.methods))]
      if name == "eval":
        paths += [f"eval/{m}" for m in config_lib.eval_model_names(ctx.config)]
        ids = [f"t/{i}" for i in range(4)]
        record_split(ctx.layout.eval_split_file, split_problems(ids, seed=ctx.config.eval.split.seed))
      for path in paths:
        os.makedirs(os.path.join(ctx.layout.workdir, path), exist_ok=True)
        with open(os.path.join(ctx.layout.workdir, path, "made_with"), "w") as f:
          f.write(f"T={ctx.config.sampling.temperature} lr={ctx.config.self_distill.learning_rate}")
      if name in killed:
        raise _Killed(name)

    return run

  return {name: stage(name) for name in ("pretrain", "synthesize", "sft", "self_distill", "eval", "report")}


def _run(config, workdir, stages, restart=()):
  runner.run(runner.prepare(config, str(workdir), stages), stages, restart=restart)


def _config(stages, temperature=1.6):
  c = micro_config(stages)
  c.sampling.temperature = temperature
  c.self_distill.rollout.max_new_tokens = 12  # Room for a prompt in the micro model's positions.
  return c


def test_a_stage_on_an_unfinished_upstream_is_refused_before_any_work(tmp_path):
  ran = []
  with pytest.raises(_Killed):
    _run(_config("pretrain,synthesize,sft"), tmp_path, _stages(ran, killed=("synthesize",)))
  ran.clear()
  stages = _stages(ran)
  with pytest.raises(
    config_lib.ConfigError,
    match=r"stage 'sft' reads the outputs of stage 'synthesize', which started but did not finish in .*: "
    r"list 'synthesize' in field 'stages' before 'sft'",
  ):
    _run(_config("pretrain,sft"), tmp_path, stages)
  with pytest.raises(config_lib.ConfigError, match=r"'synthesize', which field 'stages' lists after it"):
    _run(_config("pretrain,sft,synthesize"), tmp_path, stages)
  assert ran == [] and not (tmp_path / "stages" / "sft.started.json").exists()
  _run(_config("pretrain,synthesize,sft"), tmp_path, stages)  # Synthesis resumes first, then SFT reads all of it.
  assert ran == ["synthesize", "sft"]
  assert set(run_state.StageRecords(str(tmp_path)).read("sft", "done")["inputs"]) == {"pretrain", "synthesize"}


def test_a_redo_is_refused_while_a_finished_reader_outside_the_run_is_not_restarted(tmp_path):
  ran = []
  stages = _stages(ran)
  _run(_config("pretrain,synthesize,sft,eval,report"), tmp_path, stages)
  ran.clear()
  # sft, eval and report finished on the old samples; redoing synthesis alone would leave them done on them.
  with pytest.raises(
    config_lib.ConfigError,
    match=r"stage 'sft' finished on the outputs of \['synthesize'\], which this run redoes; stage 'eval' finished "
    r"on the outputs of \['sft'\], which must be redone with it; .*restart them too: pass "
    r"--config.stages=pretrain,synthesize,sft,eval,report --restart=synthesize,sft,eval,report",
  ):
    _run(_config("pretrain,synthesize", temperature=2.0), tmp_path, stages, restart=("synthesize",))
  assert ran == [] and not (tmp_path / "replaced").exists()
  # Nor do the stages downstream count as done with the new value of a stage they read through another.
  with pytest.raises(
    config_lib.ConfigError,
    match=r"(?s)stage 'eval' reads the outputs of stage 'synthesize' \(through 'sft'\), which this run does not "
    r"redo before it .*sampling.temperature: 1.6 -> 2.0",
  ):
    _run(_config("pretrain,eval,report", temperature=2.0), tmp_path, stages)
  assert ran == []
  restart = ("synthesize", "sft", "eval", "report")
  _run(_config(",".join(("pretrain", *restart)), temperature=2.0), tmp_path, stages, restart=restart)
  assert ran == list(restart)
  assert (tmp_path / "models" / "ssd" / "made_with").read_text().startswith("T=2.0")


def test_a_restart_sets_aside_the_models_an_earlier_config_named(tmp_path):
  ran = []
  stages = _stages(ran)
  config = _config("pretrain,self_distill,eval")
  config.eval.models = "base,sdsd,sdpo"
  _run(config, tmp_path, stages)
  config.self_distill.methods = config.eval.models = "sdsd"
  config.self_distill.learning_rate = 1e-4
  _run(config, tmp_path, stages, restart=("self_distill", "eval"))
  assert sorted(os.listdir(tmp_path / "models")) == ["base", "sdsd"]
  assert sorted(os.listdir(tmp_path / "eval")) == ["sdsd", "split.json"]
  (old_sdpo,) = tmp_path.glob("replaced/*/self_distill/models/sdpo/made_with")
  assert old_sdpo.read_text().endswith("lr=1e-06")
  assert len(list(tmp_path.glob("replaced/*/eval/eval/sdpo"))) == 1


def test_eval_models_no_stage_of_the_config_trains_are_refused():
  config = _config("pretrain,sft,self_distill,eval")
  config.self_distill.methods = "sdpo"
  config.eval.models = "base,ssd,sdsd,sdpo,sdpo_blank"
  with pytest.raises(
    config_lib.ConfigError,
    match=r"field 'eval.models' names \['sdsd', 'sdpo_blank'\], which field 'self_distill.methods' = 'sdpo' does "
    "not train",
  ):
    config_lib.check_run(config)
  config.self_distill.methods = "sdsd,sdpo,sdpo_blank"
  config_lib.check_run(config)


def test_restarting_eval_draws_a_changed_split_anew(tmp_path):
  ran = []
  stages = _stages(ran)
  config = _config("pretrain,eval")
  config.eval.models = "base"
  _run(config, tmp_path, stages)
  first = (tmp_path / "eval" / "split.json").read_text()
  config.eval.split.seed = 1
  with pytest.raises(config_lib.ConfigError, match=r"(?s)eval.split.seed: 0 -> 1.*--restart=eval"):
    _run(config, tmp_path, stages)
  _run(config, tmp_path, stages, restart=("eval",))  # The old split is set aside with the results drawn on it.
  assert '"seed": 1' in (tmp_path / "eval" / "split.json").read_text()
  assert [p.read_text() for p in tmp_path.glob("replaced/*/eval/eval/split.json")] == [first]
  assert "eval/split.json" in run_state.StageRecords(str(tmp_path)).read("eval", "done")["outputs"]


@pytest.mark.parametrize("stage", ["sft", "self_distill"])
def test_a_training_stage_refuses_another_scan_layers_before_resuming(tmp_path, stage):
  # Scanned layers checkpoint another parameter tree: the checkpoints cannot be restored (nor exported) with
  # the other value, so the change is named up front instead of failing the restore as damage.
  records = run_state.StageRecords(str(tmp_path))
  config = _config(stage)
  fingerprint = records.fingerprint(config, stage)
  records.write(stage, "started", {"stage": stage, "fingerprint": fingerprint.digest, "fields": fingerprint.fields})
  config.model.scan_layers = True
  with pytest.raises(
    config_lib.ConfigError, match=rf"(?s)stage '{stage}' started .*model.scan_layers: False -> True.*--restart={stage}"
  ):
    records.check(stage, records.fingerprint(config, stage))
  # A record made before the field joined the fingerprint may have run with either value: not refused.
  del fingerprint.fields["model.scan_layers"]
  records.write(stage, "started", {"stage": stage, "fingerprint": fingerprint.digest, "fields": fingerprint.fields})
  assert not records.check(stage, records.fingerprint(config, stage))
  # Sampling computes the same function either way: no refusal there.
  for sampling_stage in ("synthesize", "eval"):
    assert records.fingerprint(config, sampling_stage) == records.fingerprint(_config(stage), sampling_stage)


def test_self_distill_refuses_another_evaluation_split():
  # Its held-out curve scores the first dev problems of that split.
  config = _config("self_distill")
  before = run_state.StageRecords("unused").fingerprint(config, "self_distill")
  config.eval.split.seed = 7
  assert run_state.StageRecords("unused").fingerprint(config, "self_distill") != before


def test_eval_reads_only_the_stages_that_tune_its_models():
  config = _config("eval")
  config.eval.models = "base"
  assert stage_dependencies.stage_reads("eval", config) == ("pretrain",)
  config.eval.models = "base,ssd,sdpo"
  assert stage_dependencies.stage_reads("eval", config) == ("pretrain", "sft", "self_distill")
  config.model.hf_dir = "/some/base"
  assert stage_dependencies.stage_reads("sft", config) == ("synthesize",)


def test_restart_outputs_cover_every_model_and_the_split(tmp_path):
  layout = RunLayout(str(tmp_path))
  assert {"models/sdpo_blank", "models/steps/sdsd"} <= set(stage_dependencies.restart_outputs("self_distill", layout))
  assert {"eval/split.json", "eval/base", "eval/sdpo_blank"} <= set(stage_dependencies.restart_outputs("eval", layout))


@pytest.mark.parametrize(
  "stage_list, models",
  [("pretrain,eval,report", "base"), ("pretrain,self_distill,eval,report", "base,sdpo")],
)
def test_the_report_is_stale_when_the_teacher_diagnostic_it_shows_changes(tmp_path, stage_list, models):
  # The report shows the diagnostic whenever the file is there, whether or not eval reads the self_distill stage.
  ran = []
  stages = _stages(ran)
  config = _config(stage_list)
  config.self_distill.methods = "sdpo"
  config.eval.models = models
  diagnostic = tmp_path / "self_distill" / "teacher_diagnostic.json"
  diagnostic.parent.mkdir()
  diagnostic.write_text('{"student_pass1": 0.25}')
  _run(config, tmp_path, stages)
  ran.clear()
  _run(config, tmp_path, stages)
  assert ran == []  # The same diagnostic: the report is reused.

  diagnostic.write_text('{"student_pass1": 0.5}')
  with pytest.raises(
    config_lib.ConfigError,
    match=r"(?s)stage 'report' finished .*what the workdir's self_distill/teacher_diagnostic.json holds has changed"
    r".*--restart=report",
  ):
    _run(config, tmp_path, stages)
  assert ran == []
  _run(config, tmp_path, stages, restart=("report",))
  assert ran == ["report"]
  records = run_state.StageRecords(str(tmp_path))
  done = records.read("report", "done")
  assert done["contents"] == {"self_distill/teacher_diagnostic.json": content_signature(str(diagnostic))}

  # A report recorded before the diagnostic was fingerprinted counts as unchanged.
  records.write("report", "done", {**done, "contents": {}})
  diagnostic.unlink()
  _run(config, tmp_path, stages)
  assert ran == ["report"]


def test_a_run_that_writes_the_diagnostic_refuses_the_report_before_any_work(tmp_path):
  # self_distill writes the diagnostic the report holds a digest of: redoing it makes the report stale.
  ran = []
  stages = _stages(ran)
  write_stage = stages["self_distill"]

  def self_distill(ctx):
    write_stage(ctx)
    with open(ctx.layout.teacher_diagnostic, "w") as f:
      json.dump({"student_pass1": 0.5}, f)

  stages["self_distill"] = self_distill
  config = _config("pretrain,eval,report")
  config.self_distill.methods = "sdpo"
  config.eval.models = "base"
  _run(config, tmp_path, stages)
  ran.clear()
  config.stages = "pretrain,self_distill,report"
  with pytest.raises(config_lib.ConfigError, match=r"(?s)stage 'report' finished on the outputs of \['self_distill'\]"):
    _run(config, tmp_path, stages)
  assert ran == []
