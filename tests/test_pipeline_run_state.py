"""A workdir never mixes configs: fingerprints, done markers with outputs, restarts, the lock, early input checks."""

import json
import os

import pytest
from config_files import set_fields
from pipeline_fixtures import micro_config, run_pipeline

from ssd_jax import config as config_lib
from ssd_jax import main
from ssd_jax.pipeline import run_state, runner
from ssd_jax.pipeline.workdir_lock import WorkdirBusyError, WorkdirLock


def _forward_config(seed=0):
  c = micro_config("forward")
  c.seed = seed
  c.forward.batch_size = 8  # One row per fake device.
  return c


def _done(workdir, name="forward"):
  with open(os.path.join(workdir, "stages", f"{name}.done.json")) as f:
    return json.load(f)


def test_changed_values_are_refused_naming_them_until_restarted(tmp_path, capsys):
  workdir = str(tmp_path)
  run_pipeline(_forward_config(seed=0), workdir)
  done = _done(workdir)
  assert done["outputs"] == ["forward.json"] and done["fields"]["seed"] == 0
  before = open(tmp_path / "forward.json").read()

  run_pipeline(_forward_config(seed=0), workdir)
  assert "[forward] already done, skipping" in capsys.readouterr().out

  with pytest.raises(config_lib.ConfigError, match=r"(?s)stage 'forward' finished .*seed: 0 -> 1.*--restart=forward"):
    run_pipeline(_forward_config(seed=1), workdir)
  assert open(tmp_path / "forward.json").read() == before
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["seed"] == 0  # The config that made the workdir is kept.

  stages = main.stage_functions(("forward",))
  config = _forward_config(seed=1)
  runner.run(runner.prepare(config, workdir, stages), stages, restart=("forward",))
  assert _done(workdir)["fields"]["seed"] == 1
  (replaced,) = (tmp_path / "replaced").iterdir()
  assert open(replaced / "forward" / "forward.json").read() == before  # Set aside, not lost.
  assert len(os.listdir(tmp_path / "config_history")) == 3


def test_a_done_stage_with_missing_outputs_is_not_skipped(tmp_path):
  run_pipeline(_forward_config(), str(tmp_path))
  os.remove(tmp_path / "forward.json")
  with pytest.raises(config_lib.ConfigError, match=r"marked done but its outputs \['forward.json'\] are missing"):
    run_pipeline(_forward_config(), str(tmp_path))


def test_a_second_run_in_the_same_workdir_is_refused_naming_the_holder(tmp_path):
  with WorkdirLock(str(tmp_path)):
    with pytest.raises(WorkdirBusyError, match=rf"in use by pid {os.getpid()} on host"):
      run_pipeline(_forward_config(), str(tmp_path))
  run_pipeline(_forward_config(), str(tmp_path))  # Released: the next run takes it.


@pytest.mark.parametrize(
  "fields, message",
  [
    ({"eval.problems.source": "jsonl", "eval.problems.path": "missing.jsonl"}, r"'eval.problems'.*missing.jsonl"),
    ({"eval_sampling.max_new_tokens": 256}, r"'eval_sampling.max_new_tokens' = 256 leaves no room"),
    (
      {"synthesize.problems.source": "jsonl", "synthesize.problems.path": "BAD"},
      r"'synthesize.problems'.*bad.jsonl:2: not valid JSON",
    ),
    (
      {"eval.problems.num_problems": 1},
      r"'eval.problems' gives 1 problem\(s\), but evaluation splits them .* at least 2",
    ),
    ({"stages": "pretrain,eval,pretrain"}, r"'stages' = 'pretrain,eval,pretrain' lists \['pretrain'\] more than once"),
    ({"tokenizer.path": "/nonexistent"}, r"'tokenizer.path' = '/nonexistent' is set, but the 'pretrain' stage"),
    (
      {"stages": "pretrain,self_distill", "self_distill.problems.source": "jsonl", "self_distill.problems.path": ""},
      r"'self_distill.problems.path' is empty but source is 'jsonl'",
    ),
    (  # The released prompt has no wording for a function problem without starter code.
      {"prompting.style": "lcb_release"},
      r"field 'eval.problems': .*starter code",
    ),
  ],
)
def test_bad_inputs_fail_before_any_stage_runs(tmp_path, fields, message):
  config = micro_config("pretrain,synthesize,eval")
  set_fields(config, {path: str(tmp_path / "bad.jsonl") if value == "BAD" else value for path, value in fields.items()})
  (tmp_path / "bad.jsonl").write_text('{"question": "q", "task_id": "a"}\n{"question": \n')
  stages = main.stage_functions(config_lib.stage_names(config))
  with pytest.raises(config_lib.ConfigError, match=message):
    runner.prepare(config, str(tmp_path / "run"), stages)
  assert not (tmp_path / "run").exists()


def test_eval_problems_without_tests_are_refused(tmp_path):
  (tmp_path / "untested.jsonl").write_text(json.dumps({"task_id": "t/1", "question": "q", "tests": []}) + "\n")
  config = micro_config("pretrain,eval")
  config.eval.problems.update(dict(source="jsonl", path=str(tmp_path / "untested.jsonl")))
  with pytest.raises(config_lib.ConfigError, match=r"1 problems have no tests to grade, e.g. \['t/1'\]"):
    runner.prepare(config, str(tmp_path / "run"), main.stage_functions(("pretrain", "eval")))


def test_self_distill_problems_without_tests_are_refused(tmp_path):
  lines = [json.dumps({"task_id": f"t/{i}", "question": f"q{i}", "tests": []}) for i in range(8)]
  (tmp_path / "untested.jsonl").write_text("\n".join(lines) + "\n")
  config = micro_config("pretrain,self_distill")
  config.self_distill.problems.update(dict(source="jsonl", path=str(tmp_path / "untested.jsonl"), num_problems=0))
  config.self_distill.methods = "sdpo"
  with pytest.raises(config_lib.ConfigError, match=r"'self_distill.problems': 8 problems have no tests, e.g. "):
    runner.prepare(config, str(tmp_path / "run"), main.stage_functions(("pretrain", "self_distill")))
  config.self_distill.methods = "sdpo,sdpo_blank"  # The same gap for both methods: one error naming both.
  with pytest.raises(config_lib.ConfigError) as refused:
    runner.prepare(config, str(tmp_path / "run"), main.stage_functions(("pretrain", "self_distill")))
  assert str(refused.value).count("have no tests") == 1 and "methods ['sdpo', 'sdpo_blank']" in str(refused.value)
  # SDSD shows the reference solution: untested problems that have one still give its teacher a demonstration.
  config.self_distill.methods = "sdsd"
  with pytest.raises(config_lib.ConfigError, match=r"8 problems have no tests and no reference solution"):
    runner.prepare(config, str(tmp_path / "run"), main.stage_functions(("pretrain", "self_distill")))
  referenced = [
    json.dumps({"task_id": f"t/{i}", "question": f"q{i}", "tests": [], "reference_solution": f"x = {i}"})
    for i in range(8)
  ]
  (tmp_path / "untested.jsonl").write_text("\n".join(referenced) + "\n")
  runner.prepare(config, str(tmp_path / "run"), main.stage_functions(("pretrain", "self_distill")))  # accepted
  config.self_distill.sdsd.context = "feedback"  # shows no demonstration, so the reference does not help
  with pytest.raises(config_lib.ConfigError, match=r"8 problems have no tests, e.g. "):
    runner.prepare(config, str(tmp_path / "run2"), main.stage_functions(("pretrain", "self_distill")))


def test_more_prompts_per_step_than_problems_are_refused(tmp_path):
  config = micro_config("pretrain,self_distill")
  config.self_distill.problems.num_problems = 3
  config.self_distill.prompts_per_step = 4
  with pytest.raises(config_lib.ConfigError, match=r"'self_distill.prompts_per_step' = 4 exceeds the 3 problems"):
    runner.prepare(config, str(tmp_path / "run"), main.stage_functions(("pretrain", "self_distill")))
  assert not (tmp_path / "run").exists()


def test_training_on_evaluation_problems_is_refused(tmp_path):
  def problem(task_id, question):
    return json.dumps({"task_id": task_id, "question": question, "tests": [{"code": "assert True"}]}) + "\n"

  (tmp_path / "train.jsonl").write_text(
    problem("t/1", "Add two.") + problem("t/2", "Sort  a list.") + problem("t/5", "x")
  )
  (tmp_path / "eval.jsonl").write_text(problem("t/1", "Other.") + problem("e/9", "Sort a list."))
  for stage, section in (("synthesize", "synthesize"), ("self_distill", "self_distill")):
    config = micro_config(f"pretrain,{stage}")
    config[section].problems.update(dict(source="jsonl", path=str(tmp_path / "train.jsonl"), num_problems=0))
    config.eval.problems.update(dict(source="jsonl", path=str(tmp_path / "eval.jsonl"), num_problems=0))
    # The same id, or the same statement up to whitespace, is the same problem; this run need not evaluate.
    message = rf"'{section}.problems': 2 of its problems are evaluation problems too .* e.g. \['t/1', 't/2'\]"
    with pytest.raises(config_lib.ConfigError, match=message):
      runner.prepare(config, str(tmp_path / "run"), main.stage_functions(("pretrain", stage)))
    assert not (tmp_path / "run").exists()
  # A run that does not evaluate is not held up by evaluation problems it cannot load.
  config = micro_config("pretrain,synthesize")
  config.eval.problems.update(dict(source="jsonl", path=str(tmp_path / "missing.jsonl")))
  runner.prepare(config, str(tmp_path / "synthesis_only"), main.stage_functions(("pretrain", "synthesize")))


def test_a_field_added_to_the_schema_since_keeps_its_default_without_a_refusal(tmp_path, capsys):
  workdir = str(tmp_path)
  run_pipeline(_forward_config(), workdir)
  path = os.path.join(workdir, "stages", "forward.done.json")
  record = _done(workdir)
  del record["fields"]["model"]["scan_layers"]  # As written before the schema had the field.
  with open(path, "w") as f:
    json.dump(record, f)
  run_pipeline(_forward_config(), workdir)
  assert "[forward] already done, skipping" in capsys.readouterr().out
  config = _forward_config()
  config.model.scan_layers = True
  with pytest.raises(config_lib.ConfigError, match=r"model.scan_layers: False -> True"):
    run_pipeline(config, workdir)


def test_fields_that_change_how_a_stage_runs_are_not_fingerprinted(tmp_path):
  records = run_state.StageRecords(str(tmp_path))
  c = micro_config("eval")
  before = records.fingerprint(c, "eval")
  c.eval.workers, c.sft.progress_bar, c.sft.log_every = 1, False, 3
  assert records.fingerprint(c, "eval") == before and "workers" not in before.fields["eval"]
  assert records.fingerprint(c, "sft") == records.fingerprint(micro_config("eval"), "sft")
  # A record written when they were fingerprinted: another value of them is no change.
  old = {"fields": {**before.fields, "eval": {**before.fields["eval"], "workers": 8}}, "inputs": before.inputs}
  assert before.differences(old) == []
  c.eval.timeout_s = 7.0  # What a stage writes still counts.
  assert records.fingerprint(c, "eval").differences(before.record())


def test_a_stage_on_outputs_this_run_redoes_is_refused_before_any_work(tmp_path):
  ran = []
  stages = {name: (lambda ctx, name=name: ran.append(name)) for name in ("pretrain", "synthesize", "sft")}

  def run(config, restart=()):
    runner.run(runner.prepare(config, str(tmp_path), stages), stages, restart=restart)

  config = micro_config("pretrain,synthesize,sft")
  run(config)
  assert ran == ["pretrain", "synthesize", "sft"]
  config.sampling.temperature = 1.0
  # synthesize would redo its samples; sft finished on the old ones and was refused only after synthesis.
  with pytest.raises(
    config_lib.ConfigError,
    match=r"stage 'sft' finished on the outputs of \['synthesize'\].*"
    r"--restart=synthesize,sft",
  ):
    run(config, restart=("synthesize",))
  assert ran == ["pretrain", "synthesize", "sft"] and not (tmp_path / "replaced").exists()  # Nothing ran or moved.
  run(config, restart=("synthesize", "sft"))
  assert ran == ["pretrain", "synthesize", "sft", "synthesize", "sft"]
  # The precision the base model samples and trains in is part of the stages that read it (with model.hf_dir
  # set no pretrain stage names it).
  records = run_state.StageRecords(str(tmp_path))
  config.model.dtype = "bfloat16"
  for name in ("synthesize", "sft"):
    with pytest.raises(config_lib.ConfigError, match=rf"(?s)stage '{name}' finished .*model.dtype: 'float32' -> "):
      records.check(name, records.fingerprint(config, name))


def test_the_plans_fingerprint_follows_the_generation_program_it_judges(tmp_path):
  records = run_state.StageRecords(str(tmp_path))
  base = micro_config("plan,self_distill")
  digest = lambda c: records.fingerprint(c, "plan").digest
  for fields in (
    {"self_distill.rollout.batch_size": 64},
    {"self_distill.rollout.max_new_tokens": 96},
    {"self_distill.max_prompt_len": 200},
    {"eval_sampling.batch_size": 64},
    {"stages": "plan,synthesize"},
  ):
    changed = micro_config("plan,self_distill")
    set_fields(changed, fields)
    assert digest(changed) != digest(base), fields


@pytest.mark.parametrize("seed", [0, 1])
def test_a_record_from_before_the_eval_problem_seed_counts_the_seed_it_drew_with(tmp_path, seed):
  """Before `eval.problems.seed`, the built-in evaluation problems were drawn with the run's seed: a seed-1
  record evaluated other problems than the seed-0 draw the field now fixes, a seed-0 record the same ones."""
  config = config_lib.base_config()
  config.seed = seed
  fingerprint = run_state.StageRecords(str(tmp_path)).fingerprint(config, "eval")
  recorded = json.loads(json.dumps(fingerprint.record(), default=str))
  del recorded["fields"]["eval"]["problems"]["seed"]
  assert fingerprint.differences(recorded) == ([] if seed == 0 else ["eval.problems.seed: 1 -> 0"])
  recorded["fields"]["eval"]["problems"]["seed"] = -1  # the run's seed, recorded as such
  assert fingerprint.differences(recorded) == ([] if seed == 0 else ["eval.problems.seed: 1 -> 0"])
  config.eval.problems.update(dict(source="jsonl", path="problems.jsonl", seed=5))  # draws nothing with it
  recorded = run_state.StageRecords(str(tmp_path)).fingerprint(config, "eval").record()
  config.eval.problems.seed = 6
  assert run_state.StageRecords(str(tmp_path)).fingerprint(config, "eval").differences(recorded) == []
