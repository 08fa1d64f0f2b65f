"""Inputs refused in one line before any stage runs: the sandbox, the base model's files, prompts that fit the
model, the workdir."""

import json
import os
import re

import pytest
from pipeline_fixtures import micro_config, task_tokenizer_dir, write_random_base_model

from ssd_jax import config as config_lib
from ssd_jax import main
from ssd_jax.evals import isolation
from ssd_jax.pipeline import runner


def _prepare(config, workdir):
  return runner.prepare(config, str(workdir), main.stage_functions(config_lib.stage_names(config)))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("base")
  return write_random_base_model(root / "model", task_tokenizer_dir(str(root)))


def _hf_config(base_dir, stages):
  config = micro_config(stages)
  config.model.hf_dir = base_dir
  return config


def test_an_evaluation_run_compares_with_what_the_models_it_evaluates_trained_on(tmp_path, base_dir):
  # Training ran in an earlier run: evaluating its models on their own training problems is refused all the
  # same, for each evaluated model's training problems and only those.
  def problem(task_id, question):
    return json.dumps({"task_id": task_id, "question": question, "tests": [{"code": "assert True"}]}) + "\n"

  (tmp_path / "train.jsonl").write_text(problem("t/1", "Add two.") + problem("t/2", "Sort a list."))
  (tmp_path / "eval.jsonl").write_text(problem("t/1", "Add two.") + problem("e/9", "Reverse a list."))
  for models, section in (("base,ssd", "synthesize"), ("base,sdsd", "self_distill")):
    config = _hf_config(base_dir, "eval")
    config.eval.models = models
    config[section].problems.update(dict(source="jsonl", path=str(tmp_path / "train.jsonl"), num_problems=0))
    config.eval.problems.update(dict(source="jsonl", path=str(tmp_path / "eval.jsonl"), num_problems=0))
    with pytest.raises(config_lib.ConfigError, match=rf"'{section}.problems': 1 of its problems are evaluation"):
      _prepare(config, tmp_path / "run")
    config.eval.models = "base"  # trained on nothing
    _prepare(config, tmp_path / "run")
  # Training problems that do not load cannot be compared: refused, naming them.
  config = _hf_config(base_dir, "eval")
  config.synthesize.problems.update(dict(source="jsonl", path=str(tmp_path / "gone.jsonl"), num_problems=0))
  with pytest.raises(config_lib.ConfigError, match=r"'synthesize.problems': .*gone.jsonl.* the evaluated models"):
    _prepare(config, tmp_path / "run")


@pytest.mark.parametrize("stages", ["self_distill", "eval", "pretrain"])
def test_a_missing_sandbox_is_refused_before_any_stage(tmp_path, monkeypatch, stages):
  monkeypatch.setattr(isolation, "find_bwrap", lambda: None)  # A machine without bubblewrap.
  config = micro_config(f"pretrain,{stages}" if stages != "pretrain" else stages)
  config.pretrain.context_share = 0.5
  message = rf"stages \[.*'{stages}'\] run generated code, but sandbox refused to start: bubblewrap: no bwrap"
  with pytest.raises(config_lib.ConfigError, match=message):
    _prepare(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()
  config.eval.allow_weak_sandbox = True  # Asked for: the run goes ahead.
  _prepare(config, tmp_path / "run")


def test_stages_that_run_no_code_need_no_sandbox(tmp_path, monkeypatch):
  monkeypatch.setattr(isolation, "find_bwrap", lambda: None)
  _prepare(micro_config("pretrain,synthesize,sft"), tmp_path / "run")


def test_a_late_isolation_error_ends_the_run_in_one_line():
  assert isolation.IsolationError in runner.RunError


@pytest.mark.parametrize(
  "stages, fields, message",
  [
    (
      "synthesize,eval",
      {"eval_sampling.max_new_tokens": 2040},
      r"(?m)^  field 'eval_sampling.max_new_tokens' = 2040 leaves 8 of the model's 2048 positions for a prompt, but the "
      r"longest prompt of field 'eval.problems' has \d+ tokens: lower it to at most \d+$",
    ),
    (
      "synthesize,sft",
      {"sampling.max_new_tokens": 2040},
      r"(?m)^  field 'sampling.max_new_tokens' = 2040 leaves 8 .* shortest prompt of field 'synthesize.problems' has",
    ),
    (
      "synthesize,sft",
      {"sft.seq_len": 16},
      r"field 'sft.seq_len' = 16 leaves no response token of any synthesized sample in a row: the shortest prompt "
      r"of field 'synthesize.problems' has \d+ tokens",
    ),
    (
      "self_distill",
      {"self_distill.max_prompt_len": 64, "self_distill.max_teacher_prompt_len": 64},
      r"field 'self_distill.max_teacher_prompt_len' = 64 cannot hold a teacher prompt of method 'sdsd' with any "
      r"context \(the shortest, with an empty one, has \d+ tokens\)",
    ),
    (  # A rollout its teacher has no context for shows it the student's prompt: it must fit the teacher too.
      "self_distill",
      {"self_distill.max_teacher_prompt_len": 8},
      r"field 'self_distill.max_teacher_prompt_len' = 8 fits 0 of the \d+ prompts of field 'self_distill.problems'",
    ),
    (
      "self_distill",
      {"self_distill.max_prompt_len": 8},
      r"field 'self_distill.max_prompt_len' = 8 fits 0 of the \d+ prompts of field 'self_distill.problems' \(the "
      r"shortest has \d+ tokens\), fewer than field 'self_distill.prompts_per_step' = \d+",
    ),
  ],
)
def test_prompts_past_the_models_positions_are_refused_with_the_models_tokenizer(
  tmp_path, base_dir, stages, fields, message
):
  config = _hf_config(base_dir, stages)
  for path, value in fields.items():
    section, field = path.split(".")
    config[section][field] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    _prepare(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_the_base_models_files_are_checked_before_any_stage(tmp_path, base_dir):
  config = _hf_config(str(tmp_path / "copy"), "synthesize")
  os.makedirs(tmp_path / "copy")
  for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
    if os.path.exists(os.path.join(base_dir, name)):
      with open(os.path.join(base_dir, name)) as src, open(tmp_path / "copy" / name, "w") as dst:
        dst.write(src.read())
  with pytest.raises(config_lib.ConfigError, match=r"'model.hf_dir' = '.*copy' holds no weights: neither model"):
    _prepare(config, tmp_path / "run")

  config = _hf_config(base_dir, "synthesize")
  config.tokenizer.path = str(tmp_path / "copy" / "config.json")
  with pytest.raises(
    config_lib.ConfigError, match=r"(?m)^  field 'tokenizer.path' = '.*config.json': .* not a SentencePiece"
  ):
    _prepare(config, tmp_path / "run")
  config.tokenizer.path = str(tmp_path / "empty")
  os.makedirs(tmp_path / "empty")
  with pytest.raises(config_lib.ConfigError, match=r"(?m)^  field 'tokenizer.path' = .*has neither tokenizer.json nor"):
    _prepare(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_a_base_model_without_tokenizer_files_is_refused_naming_hf_dir(tmp_path, base_dir):
  os.makedirs(tmp_path / "bare")
  for name in os.listdir(base_dir):
    if not name.startswith(("tokenizer", "special_tokens")):
      os.link(os.path.join(base_dir, name), tmp_path / "bare" / name)
  config = _hf_config(str(tmp_path / "bare"), "eval")
  with pytest.raises(config_lib.ConfigError, match=r"(?m)^  field 'model.hf_dir' = '.*bare': tokenizer directory"):
    _prepare(config, tmp_path / "run")


@pytest.mark.parametrize(
  "workdir, message",
  [
    ("", r"--workdir is empty"),
    ("FILE", r"--workdir '.*file' is a file, not a directory"),
    ("FILE/sub", r"--workdir '.*file/sub' cannot be made: '.*file' is a file"),
    ("/proc/x", r"--workdir '/proc/x' cannot be made or written in '/proc'"),
  ],
)
def test_a_bad_workdir_is_named(tmp_path, workdir, message):
  (tmp_path / "file").write_text("")
  error = main.workdir_error(workdir.replace("FILE", str(tmp_path / "file")))
  assert error is not None and re.fullmatch(message + ".*", error)


def test_a_good_workdir_is_left_as_it_was(tmp_path):
  assert main.workdir_error(str(tmp_path / "new" / "run")) is None
  assert main.workdir_error(str(tmp_path)) is None
  assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == []


def test_a_refused_restart_sets_nothing_aside(tmp_path):
  config = micro_config("pretrain,eval")
  config.eval.problems.num_problems = 1
  eval_root = tmp_path / "run" / "eval"
  os.makedirs(eval_root)
  (eval_root / "split.json").write_text(json.dumps({}))
  with pytest.raises(config_lib.ConfigError, match=r"'eval.problems' gives 1 problem\(s\)"):
    _prepare(config, tmp_path / "run")  # main prepares before `runner.run` sets anything aside.
  assert os.listdir(tmp_path / "run") == ["eval"]
