"""Values that used to pass the checks and fail minutes or hours into a run are refused before any work."""

import math
import re

import pytest
from config_files import load_config, set_fields
from pipeline_fixtures import micro_config

from ssd_jax import config as config_lib
from ssd_jax import main
from ssd_jax.evals import cli
from ssd_jax.pipeline import run_state, runner


def _config(stages, **fields):
  c = config_lib.base_config()
  c.stages = stages
  return set_fields(c, {k.replace("__", "."): v for k, v in fields.items()})


def _prepare(config, tmp_path):
  return runner.prepare(config, str(tmp_path / "run"), main.stage_functions(config_lib.stage_names(config)))


# Batches over the mesh's batch shards (data x fsdp x expert).

MESH_4 = {"mesh.data": 4}


@pytest.mark.parametrize(
  "stages, fields, named",
  [
    ("pretrain,synthesize,sft", {"sft.global_batch_size": 6}, "field 'sft.global_batch_size' = 6"),
    ("pretrain", {"pretrain.global_batch_size": 6}, "field 'pretrain.global_batch_size' = 6"),
    ("pretrain,synthesize", {"sampling.batch_size": 6}, "field 'sampling.batch_size' = 6"),
    ("pretrain,eval", {"eval_sampling.batch_size": 6}, "field 'eval_sampling.batch_size' = 6"),
    ("pretrain,self_distill", {"eval_sampling.batch_size": 6}, "field 'eval_sampling.batch_size' = 6"),
    ("pretrain,self_distill", {"self_distill.rollout.batch_size": 6}, "field 'self_distill.rollout.batch_size' = 6"),
    (
      "pretrain,self_distill",
      {"self_distill.prompts_per_step": 3, "self_distill.group_size": 2},
      r"fields 'self_distill.prompts_per_step' x 'self_distill.group_size' \(the rollouts of an update\) = 3 x 2 = 6",
    ),
    ("forward", {"forward.batch_size": 2}, "field 'forward.batch_size' = 2"),
  ],
)
def test_batches_that_the_mesh_cannot_split_are_refused(stages, fields, named):
  c = set_fields(_config(stages), {**MESH_4, **fields})
  message = rf"{named} rows do not split over the 4 batch shards \(data x fsdp x expert\) of mesh \{{'data': 4, "
  with pytest.raises(config_lib.ConfigError, match=message + r".*make it a multiple of 4"):
    config_lib.validate(c, device_count=4)


def test_batch_shards_are_data_fsdp_and_expert_not_tensor():
  c = set_fields(_config("pretrain,sft"), {"mesh.data": 1, "mesh.fsdp": 2, "mesh.expert": 2, "mesh.tensor": 2})
  c.sft.global_batch_size = 4
  config_lib.validate(c, device_count=8)
  c.sft.global_batch_size = 2
  with pytest.raises(config_lib.ConfigError, match=r"'sft.global_batch_size' = 2 rows do not split over the 4"):
    config_lib.validate(c, device_count=8)


def test_batches_that_work_today_are_not_refused():
  # Micro-batches of grad_accum_steps need not split (the step's sharding constraint pads them), and a
  # stage that does not run may keep any batch.
  c = set_fields(_config("pretrain,sft"), {**MESH_4, "sft.global_batch_size": 8, "sft.grad_accum_steps": 4})
  c.sampling.batch_size = c.eval_sampling.batch_size = c.self_distill.rollout.batch_size = 6
  c.forward.batch_size = 2
  config_lib.validate(c, device_count=4)
  c = set_fields(
    _config("pretrain,self_distill"), {**MESH_4, "self_distill.eval_every": 0, "eval_sampling.batch_size": 6}
  )
  config_lib.validate(c, device_count=4)  # No held-out curve: T_eval is never sampled.
  config_lib.validate(set_fields(_config("pretrain,sft"), {"sft.global_batch_size": 6}))  # No device count, no mesh.


def test_a_plan_only_run_checks_the_batches_it_compiles_on_its_slice(tmp_path):
  c = micro_config("plan")
  c.mesh.topology = "v5e:2x2"  # 4 chips, whatever this machine has.
  c.sampling.batch_size = 6  # Not the largest generation batch: the plan never compiles it.
  config_lib.validate(c, device_count=config_lib.planning_device_count(c))
  _prepare(c, tmp_path)
  c.sft.global_batch_size = 6
  c.self_distill.rollout.batch_size = 10
  with pytest.raises(config_lib.ConfigError) as error:
    _prepare(c, tmp_path)
  assert "field 'sft.global_batch_size' (the plan's SFT step) = 6 rows do not split over the 4" in str(error.value)
  assert "field 'self_distill.rollout.batch_size' (the plan's generation batch) = 10 rows" in str(error.value)


@pytest.mark.parametrize(
  "name",
  ["tpu_v5", "llama3p1_8b_instruct", "llama3p1_8b_instruct_v5e64", "qwen3_30b_a3b_instruct", "qwen3_30b_a3b_thinking"],
)
def test_shipped_slice_configs_split_their_batches_on_their_slice(name):
  c = load_config(name)
  config_lib.validate(c, device_count=config_lib.topology_chips(c.mesh.topology))


def test_default_config_splits_its_batches_over_eight_devices():
  config_lib.validate(load_config("default"), device_count=8)


# self_distill's optimizer and templates, and its rollouts per step against grad_accum_steps.


@pytest.mark.parametrize(
  "field, value",
  [
    ("b1", 1.5),
    ("b2", 1.0),
    ("weight_decay", -0.1),
    ("grad_clip_norm", math.inf),
    ("templates.demonstration", "{prompt} and nothing else"),
    ("templates.feedback", "{prompt} failed: {feedback} at {line}"),
    ("templates.both", "{prompt} {demonstration} {feedback} {"),
    ("templates.both", "{prompt} {demonstration} {feedback} {0}"),
    ("templates.demonstration", "Solve: {{prompt}}\n{demonstration}"),  # A literal {prompt}, not the prompt.
    ("templates.feedback", "{prompt} {prompt[a]} {feedback}"),
    ("templates.feedback", "{prompt.x} {feedback}"),
    ("templates.both", "{prompt!r} {demonstration} {feedback}"),
    ("templates.both", "{prompt:>80} {demonstration} {feedback}"),
    ("diagnostic_samples", 1),  # The feedback comparison needs a failed sample and another to count.
    ("templates.max_feedback_chars", 0),
    ("templates.max_demonstration_chars", -1),
  ],
)
def test_self_distill_optimizer_template_and_diagnostic_fields_are_checked(field, value):
  c = set_fields(config_lib.base_config(), {f"self_distill.{field}": value})
  with pytest.raises(config_lib.ConfigError, match=f"field 'self_distill.{field}' = "):
    config_lib.validate(c)


def test_a_self_distill_step_count_is_refused_once():
  c = set_fields(config_lib.base_config(), {"self_distill.steps": 0})
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(c)
  assert str(error.value).count("field 'self_distill.steps' = 0 is invalid") == 1


def test_templates_with_literal_braces_pass():
  c = config_lib.base_config()
  c.self_distill.templates.demonstration = "{prompt}\n\nA correct solution, as a dict {{...}}:\n{demonstration}"
  config_lib.validate(c)


def test_rollouts_per_step_must_split_into_grad_accum_micro_batches():
  c = set_fields(config_lib.base_config(), {"self_distill.prompts_per_step": 8, "self_distill.group_size": 4})
  c.self_distill.grad_accum_steps = 4
  config_lib.validate(c)
  c.self_distill.grad_accum_steps = 3
  message = (
    r"fields 'self_distill.prompts_per_step' x 'self_distill.group_size' = 8 x 4 = 32 rollouts per update are not "
    r"divisible by 'self_distill.grad_accum_steps' = 3"
  )
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c)


# Infinite values where infinity means nothing.


@pytest.mark.parametrize(
  "field",
  [
    "sampling.temperature",
    "eval_sampling.temperature",
    "self_distill.rollout.temperature",
    "self_distill.sdsd.loss_temperature",
    "self_distill.sdpo.is_clip",
    "self_distill.learning_rate",
    "self_distill.end_learning_rate",
    "pretrain.learning_rate",
    "sft.end_learning_rate",
    "sft.weight_decay",
    "sft.grad_clip_norm",
    "eval.timeout_s",
    "plan.hbm_gib",
    "toy.train_temperature",
    "toy.pretrain_learning_rate",
  ],
)
def test_infinite_values_are_refused(field):
  c = set_fields(config_lib.base_config(), {field: math.inf})
  with pytest.raises(config_lib.ConfigError, match=f"field '{field}' = inf is invalid: expected .*finite"):
    config_lib.validate(c)


@pytest.mark.parametrize("field", ["sft.learning_rate", "self_distill.end_learning_rate"])
def test_learning_rates_past_float32_are_refused(field):
  # 1e39 is finite in Python but inf in the float32 schedule.
  c = set_fields(config_lib.base_config(), {field: 1e39})
  with pytest.raises(config_lib.ConfigError, match=f"field '{field}' = 1e\\+39 is invalid: expected .*in float32"):
    config_lib.validate(c)


@pytest.mark.parametrize(
  "field, value",
  [
    ("toy.eval_temperatures", "0.5,inf"),
    ("toy.ks", "1,inf"),
    ("eval.grid.temperatures", "0.7,inf"),
    ("eval.grid.named", "hot=inf/20/0.8"),
  ],
)
def test_infinite_values_in_lists_are_refused(field, value):
  c = set_fields(config_lib.base_config(), {field: value})
  with pytest.raises(config_lib.ConfigError, match=f"field '{field}' = '{value}'"):
    config_lib.validate(c)


# What needs the model: lengths past its positions, the pretrain stage's vocabulary.


def _self_distill_micro(**fields):
  c = micro_config("pretrain,self_distill")
  c.self_distill.rollout.max_new_tokens = 12
  c.self_distill.max_prompt_len = 128
  c.self_distill.max_teacher_prompt_len = 244  # 244 + 12 = the micro model's 256 positions.
  return set_fields(c, fields)


def test_on_policy_rows_must_fit_the_model_positions(tmp_path):
  _prepare(_self_distill_micro(), tmp_path)
  c = _self_distill_micro(**{"self_distill.max_teacher_prompt_len": 245, "self_distill.max_prompt_len": 512})
  with pytest.raises(config_lib.ConfigError) as error:
    _prepare(c, tmp_path)
  message = str(error.value)
  assert (
    "fields 'self_distill.max_teacher_prompt_len' = 245 and 'self_distill.rollout.max_new_tokens' = 12 make "
    "teacher rows of 257 tokens, past the model's 256 positions" in message
  )
  assert "fields 'self_distill.max_prompt_len' = 512 and 'self_distill.rollout.max_new_tokens' = 12 make" in message


def test_the_held_out_curve_needs_room_for_a_prompt(tmp_path):
  c = _self_distill_micro(**{"eval_sampling.max_new_tokens": 256})
  with pytest.raises(config_lib.ConfigError, match="'eval_sampling.max_new_tokens' = 256 leaves no room"):
    _prepare(c, tmp_path)
  c.self_distill.eval_every = 0
  _prepare(c, tmp_path)


def test_pretrain_model_vocabulary_must_be_the_task_tokenizers(tmp_path):
  c = micro_config("pretrain")
  c.model.overrides.vocab_size = 1000
  message = r"field 'model.overrides.vocab_size' = 1000, but .* field 'pretrain.tokenizer_vocab_size' = 512 tokens"
  with pytest.raises(config_lib.ConfigError, match=message):
    _prepare(c, tmp_path)
  c.model.overrides.vocab_size, c.pretrain.tokenizer_vocab_size = 0, 1024
  with pytest.raises(config_lib.ConfigError, match=r"model preset 'tiny_qwen3' has vocab_size 512 .* = 1024 tokens"):
    _prepare(c, tmp_path)
  c.model.overrides.vocab_size = 1024
  _prepare(c, tmp_path)


# Seed and stages.


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_outside_uint32_is_refused(seed):
  c = set_fields(config_lib.base_config(), {"seed": seed})
  with pytest.raises(config_lib.ConfigError, match=rf"field 'seed' = {seed} is invalid"):
    config_lib.validate(c)
  c.seed = 2**32 - 1
  config_lib.validate(c)


@pytest.mark.parametrize("stages", ["", " , "])
def test_an_empty_stage_list_is_refused(stages):
  c = set_fields(config_lib.base_config(), {"stages": stages})
  with pytest.raises(config_lib.ConfigError, match="field 'stages' = .* expected at least one stage"):
    config_lib.validate(c)


# The evals CLI refuses bad flags before it reads a file or starts a sandbox.


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--ks=0,-1,5", r"--ks=0,-1,5: every k of pass@k must be >= 1"),
    ("--bootstrap=0", r"--bootstrap=0: expected at least 1"),
    ("--timeout_s=inf", r"--timeout_s=inf: expected seconds in \(0, 86400\]"),
    ("--timeout_s=0", r"--timeout_s=0.0: expected seconds in \(0, 86400\]"),
    ("--timeout_s=1e12", r"--timeout_s=1000000000000.0: expected seconds in \(0, 86400\]"),  # past the clock
    ("--memory_mb=8796093022208", r"--memory_mb=8796093022208: expected megabytes in \[1, 1099511627776\]"),
    ("--workers=65", r"--workers=65: expected 1 to 64 parallel executions"),  # a sandbox's block of user ids
    ("--ks=1,x", r"--ks=1,x: expected comma-separated integers"),
    ("--seed=-1", r"--seed=-1: expected a seed >= 0"),
  ],
)
def test_evals_cli_refuses_bad_flags_before_any_work(tmp_path, capsys, flag, message):
  # Neither file exists: reading either would fail with another message.
  args = [f"--problems={tmp_path / 'none.jsonl'}", f"--completions={tmp_path / 'none.jsonl'}", f"--out={tmp_path}"]
  with pytest.raises(ValueError, match=message):
    cli.run_evaluate([*args, flag])
  with pytest.raises(SystemExit) as exit_info:  # Exit status 2, as for every other bad flag or input.
    cli.main([*args, flag])
  assert exit_info.value.code == 2
  assert re.match(f"error: {message}", capsys.readouterr().err)


def test_evaluating_on_the_problems_the_base_model_was_pretrained_on_is_refused():
  fields = {"stages": "pretrain,eval,report", "eval.problems.split": "pretrain", "eval.problems.num_problems": 20}
  c = set_fields(config_lib.base_config(), fields)
  config_lib.validate(c)
  with pytest.raises(config_lib.ConfigError, match="field 'eval.problems.split' = 'pretrain': .* measure recall"):
    config_lib.check_run(c)
  config_lib.check_run(set_fields(c, {"eval.problems.split": "eval"}))


def test_a_negative_eval_top_k_is_off_as_the_sampling_section_documents():
  c = set_fields(config_lib.base_config(), {"eval_sampling.top_k": -1, "eval.grid.truncations": ""})
  config_lib.validate(c)
  assert {s.top_k for s in config_lib.decoding_grid(c).settings()} == {0}


def test_a_rerun_of_later_stages_reads_the_workdirs_base_model(tmp_path):
  # `--config.stages=eval` on a workdir whose pretrain stage finished reads its base model: an empty
  # model.hf_dir is no error there (it was, and its advice would have changed the run's fingerprint).
  c = micro_config("eval")
  with pytest.raises(config_lib.ConfigError, match="'model.hf_dir' is empty"):
    _prepare(c, tmp_path)
  run_state.StageRecords(str(tmp_path / "run")).write("pretrain", "done", {})
  with pytest.raises(config_lib.ConfigError) as error:  # This stand-in workdir has no base model files.
    _prepare(c, tmp_path)
  assert "is empty" not in str(error.value) and "run/models/base" in str(error.value)
