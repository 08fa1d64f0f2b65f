"""Paper-row configs carry the paper's numbers and fail early, naming the field, without weights."""

import json
import os
import subprocess
import sys

import pytest
from config_files import load_config, set_fields
from flax import nnx

from ssd_jax import config as config_lib
from ssd_jax.model import Transformer, hf, presets
from ssd_jax.pipeline import model_io
from ssd_jax.pipeline.context import RunContext, model_config_from

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_ROWS = {  # config -> (T_train, top-k, top-p, T_eval, sft steps, warm-up, checkpoint every)
  "qwen3_4b_instruct": (1.6, 20, 0.8, 1.1, 2500, 250, 250),
  "qwen3_4b_thinking": (1.1, 20, 0.95, 0.7, 300, 50, 50),
  "llama3p1_8b_instruct": (0.8, 20, 0.8, 0.7, 2500, 250, 250),
  "qwen3_30b_a3b_instruct": (1.6, 20, 0.8, 0.9, 2500, 250, 250),
  "qwen3_30b_a3b_thinking": (1.2, 20, 0.95, 0.7, 300, 50, 50),
  "tpu_v5": (1.6, 20, 0.8, 1.1, 2500, 250, 250),
}


def _check(c):
  """Every check a run makes before loading weights: the values, then what the stages need."""
  config_lib.validate(c)
  config_lib.check_run(c)


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_paper_rows_hold_the_papers_recipe(name):
  c = load_config(name)
  config_lib.validate(c)
  t_train, top_k, top_p, t_eval, steps, warmup, every = PAPER_ROWS[name]
  assert (c.sampling.temperature, c.sampling.top_k, c.sampling.top_p, c.sampling.n) == (t_train, top_k, top_p, 1)
  assert (c.eval_sampling.temperature, c.eval_sampling.top_k, c.eval_sampling.top_p) == (t_eval, top_k, top_p)
  assert (c.sft.steps, c.sft.warmup_steps, c.sft.checkpoint_every) == (steps, warmup, every)
  assert (c.sft.learning_rate, c.sft.end_learning_rate, c.sft.b1, c.sft.b2, c.sft.weight_decay) == (
    5e-6,
    1e-6,
    0.9,
    0.95,
    0.1,
  )
  # 32 samples per step, one per row (a slice may take shorter rows), and n = 10 per problem.
  assert (c.sft.global_batch_size, c.sft.pack, c.eval_sampling.n) == (32, False, 10)
  # Every model is tuned over T_eval around the row's and the model card's setting, at every checkpoint.
  assert str(t_eval) in c.eval.grid.temperatures.split(",") and c.eval.grid.named.startswith("official=")
  # Both the row's T_eval and the card's temperature (the base's usual best) have a colder and a hotter
  # neighbour, so neither model's best can lie beyond the grid's edge unseen.
  temperatures = [s.temperature for s in config_lib.decoding_grid(c).settings()]
  for t in (t_eval, float(c.eval.grid.named.split("=")[1].split("/")[0])):
    assert min(temperatures) < t < max(temperatures)
  assert c.eval.checkpoints == "all"
  assert c.sft.max_to_keep * c.sft.checkpoint_every >= c.sft.steps  # so every save is kept
  # The authors' released LiveCodeBench prompt: one user turn, no system message, no examples.
  assert (c.prompting.style, c.prompting.system_prompt, c.prompting.include_public_tests) == ("lcb_release", "", False)


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_paper_rows_without_weights_fail_naming_hf_dir(name):
  with pytest.raises(config_lib.ConfigError, match=r"'model.hf_dir' is empty.*--config.model.hf_dir="):
    _check(load_config(name))


def test_missing_or_empty_weights_directory_is_named(tmp_path):
  c = load_config("qwen3_4b_instruct")
  c.model.hf_dir = str(tmp_path / "nowhere")
  c.synthesize.problems.path = c.eval.problems.path = "problems.jsonl"
  with pytest.raises(config_lib.ConfigError, match="'model.hf_dir' = .*nowhere.* holds no config.json"):
    _check(c)
  c.model.hf_dir = str(tmp_path)  # Exists, but empty.
  with pytest.raises(config_lib.ConfigError, match="holds no config.json"):
    _check(c)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("sft.warmup_steps", 3000, "'sft.warmup_steps' = 3000 exceeds 'sft.steps'"),
    ("sft.end_learning_rate", 1e-3, "'sft.end_learning_rate'"),
    ("model.hf_dir", "/some/dir", "'model.hf_dir' = '/some/dir' is set, but the 'pretrain' stage"),
    ("eval.problems.num_problems", 0, "'eval.problems.num_problems' must be >= 1"),
    ("self_distill.sdpo.top_k", 0, "'self_distill.sdpo.top_k' = 0 must be >= 1 for form 'topk'"),
    ("eval.checkpoints", "20,30", r"names steps \[30\], which sft does not keep: it saves steps \[20, 40\]"),
  ],
)
def test_cross_field_errors_name_the_field(field, value, message):
  c = load_config("default")
  set_fields(c, {field: value})
  with pytest.raises(config_lib.ConfigError, match=message):
    _check(c)


@pytest.mark.parametrize(
  "field, value",
  [
    ("eval.ks", "1,x"),
    ("eval.models", "base,student"),
    ("synthesize.problems.source", "web"),
    ("pretrain.corruption_rate", 1.5),
    ("pretrain.context_share", -0.1),
    ("sft.grad_accum_steps", 0),
  ],
)
def test_bad_pipeline_values_name_the_field(field, value):
  c = load_config("default")
  set_fields(c, {field: value})
  with pytest.raises(config_lib.ConfigError, match=f"'{field}'"):
    config_lib.validate(c)


def test_checkpoints_evaluated_must_be_kept():
  c = load_config("default")
  c.eval.models, c.eval.checkpoints = "base,ssd", "all"
  _check(c)  # Both saves (steps 20 and 40) are kept.
  c.sft.max_to_keep = 1
  with pytest.raises(config_lib.ConfigError, match=r"'all' evaluates every checkpoint sft saves \(steps \[20, 40\]\)"):
    _check(c)
  c.eval.checkpoints = "20"
  with pytest.raises(config_lib.ConfigError, match=r"'sft.max_to_keep' = 1 keeps \[40\]"):
    _check(c)


def test_default_config_is_ready_to_run():
  c = load_config("default")
  config_lib.validate(c)
  _check(c)
  assert c.stages == "pretrain,synthesize,sft,self_distill,eval,report"
  # One report compares the base with every method trained from it, the feedback ablation included.
  assert c.eval.models == "base,ssd,sdsd,sdpo,sdpo_blank"
  assert c.self_distill.methods == "sdsd,sdpo,sdpo_blank"
  assert 0 < c.pretrain.context_share < 1


def test_self_distill_without_pretrain_needs_base_weights():
  c = load_config("default")
  c.stages = "self_distill"
  with pytest.raises(config_lib.ConfigError, match="'model.hf_dir' is empty.*self_distill"):
    _check(c)


def test_cli_stops_before_work_without_weights(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "ssd_jax.main", "--config=configs/llama3p1_8b_instruct.py", f"--workdir={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0
  assert "model.hf_dir" in result.stderr and "synthesize.problems.path" in result.stderr
  assert not os.listdir(tmp_path)


def test_router_loss_weight_follows_the_checkpoint_unless_set(tmp_path):
  exported = hf.config_to_hf(presets.get("tiny_qwen3_moe"))
  exported.update(output_router_logits=False, router_aux_loss_coef=0.001)
  (tmp_path / "config.json").write_text(json.dumps(exported))
  c = load_config("default")
  c.model.hf_dir = str(tmp_path)
  assert model_config_from(c).router_aux_loss_coef == 0.0  # output_router_logits is false: no router loss.
  c.model.router_aux_loss_coef = 0.01
  assert model_config_from(c).router_aux_loss_coef == 0.01
  c.model.router_aux_loss_coef = -2.0
  with pytest.raises(config_lib.ConfigError, match="'model.router_aux_loss_coef'"):
    config_lib.validate(c)


@pytest.mark.parametrize("configured, trained", [(-1.0, 0.002), (0.0, 0.0), (0.01, 0.01)])
def test_a_loaded_model_trains_with_the_configured_router_loss_weight(tmp_path, configured, trained):
  # What sft and self_distill train (and export) is the model ctx.load_model returns, not ctx.model_cfg.
  cfg = presets.get("tiny_qwen3_moe", dtype="float32", param_dtype="float32", router_aux_loss_coef=0.002)
  hf.save_hf(Transformer(cfg, rngs=nnx.Rngs(0)), cfg, str(tmp_path / "base"))
  c = set_fields(
    config_lib.base_config(), {"model.hf_dir": str(tmp_path / "base"), "model.router_aux_loss_coef": configured}
  )
  ctx = RunContext.create(c, str(tmp_path / "run"))
  graphdef, params = ctx.load_model(ctx.base_model_dir)
  assert model_io.model_config_of(graphdef, params).router_aux_loss_coef == trained


@pytest.mark.parametrize(
  "fields, named",
  [
    ({"self_distill.rollout.top_p": 0.95}, "'self_distill.rollout.top_p' = 0.95"),
    ({"self_distill.rollout.top_k": 20}, "'self_distill.rollout.top_k' = 20"),
    ({"self_distill.sdpo.loss_temperature": 0.6}, "'self_distill.sdpo.loss_temperature' = 0.6 is not the rollout's"),
  ],
)
def test_the_sampled_form_is_refused_for_rollouts_it_does_not_estimate_from(fields, named):
  c = load_config("default")
  set_fields(c, {"self_distill.rollout.top_k": 0, "self_distill.rollout.top_p": 1.0})
  set_fields(c, {"self_distill.sdpo.form": "sampled", **fields})
  with pytest.raises(config_lib.ConfigError, match=f"'self_distill.sdpo.form' = 'sampled' .*{named}"):
    _check(c)
  set_fields(c, {"self_distill.sdpo.form": "full"})
  _check(c)


def test_the_sampled_form_at_the_rollouts_temperature_untruncated_is_accepted():
  c = load_config("default")
  untruncated = {"self_distill.rollout.top_k": 0, "self_distill.rollout.top_p": 1.0}
  set_fields(c, {"self_distill.sdpo.form": "sampled", "self_distill.sdpo.loss_temperature": 1.1, **untruncated})
  _check(c)


@pytest.mark.parametrize("stages,refused", [("pretrain", True), ("sft", True), ("self_distill", True), ("eval", False)])
def test_float16_parameters_are_refused_for_training(stages, refused):
  # Adam's epsilon is 0 in float16: the first update was NaN whatever the learning rate.
  c = config_lib.base_config()
  c.stages, c.model.param_dtype = stages, "float16"
  errors = config_lib.run.run_errors(c)
  assert any("'model.param_dtype' = 'float16' cannot be trained" in e for e in errors) == refused


@pytest.mark.parametrize(
  "dtype,methods,teacher,rate,refused",
  [
    ("bfloat16", "sdpo", "ema", 0.05, True),
    ("bfloat16", "sdpo_blank", "ema", 0.01, True),  # the ablation takes sdpo's teacher
    ("float32", "sdpo", "ema", 0.05, False),
    ("bfloat16", "sdpo", "frozen", 0.05, False),
    ("bfloat16", "sdpo", "ema", 1.0, False),  # a copy of the student each update: no rounding to lose
    ("bfloat16", "sdpo", "ema", 0.0, False),  # never moves: the frozen teacher
    ("bfloat16", "sdsd", "ema", 0.05, False),  # sdpo's teacher is not trained
  ],
)
def test_an_ema_teacher_in_bfloat16_weights_is_refused(dtype, methods, teacher, rate, refused):
  # 0.05 x a drift of 1% of a weight is 5e-4 of it; bfloat16 keeps steps of 1/256: the teacher never moved.
  c = config_lib.base_config()
  c.stages, c.model.param_dtype, c.self_distill.methods = "self_distill", dtype, methods
  c.self_distill.sdpo.teacher, c.self_distill.sdpo.ema_rate = teacher, rate
  errors = config_lib.run.run_errors(c)
  assert any("cannot hold the EMA teacher" in e for e in errors) == refused, errors
  if refused:  # Named by the method asked for and the field that sets its rate.
    assert any(f"methods {methods} (field 'self_distill.sdpo.ema_rate' = {rate})" in e for e in errors), errors
  c.stages = "eval"
  assert not any("EMA teacher" in e for e in config_lib.run.run_errors(c))
