"""SDPO's code-generation setting: feedback only without a successful sibling, `<think>` stripped, several
updates per rollout batch, and the shipped configs' paper-faithful defaults."""

import dataclasses
import types

import numpy as np
import pytest
from config_files import load_config
from rollout_fakes import one_problem_step

from ssd_jax import config as config_lib
from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.evals import EvalResult, ProblemResult, SampleResult
from ssd_jax.evals.verdicts import TestRun, Verdict
from ssd_jax.onpolicy import learner, rollout_source, rollouts
from ssd_jax.onpolicy.teacher_context import Attempt, TeacherTemplates, choose_contexts
from ssd_jax.pipeline import onpolicy_setup


def test_feedback_only_when_no_successful_sibling():
  group = [Attempt("wrong A", False, "assert f(1) == 2"), Attempt("right B", True, ""), Attempt("wrong C", False, "E")]
  choices = choose_contexts(group, kind="demonstration_else_feedback", templates=TeacherTemplates())
  assert [(c.demonstration, c.feedback) for c in choices] == [("right B", None), (None, None), ("right B", None)]
  # Rollout 1's only winner is itself: no demonstration, and it passed, so no feedback either.
  alone = choose_contexts(group[:1], kind="demonstration_else_feedback", templates=TeacherTemplates())
  assert (alone[0].demonstration, alone[0].feedback) == (None, "assert f(1) == 2")


def test_think_blocks_are_stripped_from_demonstrations():
  group = [
    Attempt("x", False, "E"),
    Attempt("<think>try a loop\n</think>\nright", True, ""),
    Attempt("<think>cut", True, ""),
  ]
  stripped = choose_contexts(group, kind="demonstration", templates=TeacherTemplates(strip_thinking=True))
  assert stripped[0].demonstration == "right" and stripped[1].demonstration == ""
  kept = choose_contexts(group, kind="demonstration", templates=TeacherTemplates())
  assert kept[0].demonstration.startswith("<\u200bthink>")  # kept as text, not as the reasoning tag


def test_rollouts_are_reused_for_updates_per_batch(monkeypatch):
  calls = []

  def fake_collect(setup, spec, params, prompts, *, seed):
    calls.append((params, seed))
    return types.SimpleNamespace(
      batch={"rows": len(calls)}, reward=0.5, context_fraction=1.0, response_tokens=3.0, seconds={}
    )

  monkeypatch.setattr(rollout_source, "collect_step_data", fake_collect)
  monkeypatch.setattr(rollout_source, "process_rows", lambda batch, index, count: batch)
  behaviour = lambda params, batch: {**batch, "behaviour_of": params}  # noqa: E731
  source = rollout_source.RolloutSource(
    None, None, _Prompts(8), 2, 0, lambda b: b, updates_per_batch=3, behaviour=behaviour
  )
  state = lambda p: types.SimpleNamespace(train=types.SimpleNamespace(params=p))  # noqa: E731
  batches = [source.next_batch(step, state(f"params@{step}"))[0] for step in range(7)]
  assert [b["rows"] for b in batches] == [1, 1, 1, 2, 2, 2, 3]
  # Each rollout batch is drawn by the student of its first step, with the seed of its batch index, and its
  # importance weights' denominator comes from the same parameters.
  assert [p for p, _ in calls] == ["params@0", "params@3", "params@6"]
  assert [b["behaviour_of"] for b in batches] == ["params@0"] * 3 + ["params@3"] * 3 + ["params@6"]
  # Only a step that draws rollouts computes with the state (the loop checks that state's loss first).
  assert [source.reads_state(step) for step in range(7)] == [True, False, False, True, False, False, True]
  assert [s for _, s in calls] == [rollout_source.step_seed(0, j) for j in range(3)]


def test_the_ema_teacher_moves_once_per_rollout_batch():
  """SDPO's code updates the EMA teacher after all updates on a rollout batch, not after each one."""
  student = learner.OnPolicyLearner.__new__(learner.OnPolicyLearner)
  student.spec, student._base = types.SimpleNamespace(teacher="ema"), "base"
  student.config = types.SimpleNamespace(updates_per_batch=3)
  seen = []

  def fake_step(train, batch, teacher):
    seen.append(teacher)
    return types.SimpleNamespace(step=train.step + 1, params=f"student@{train.step + 1}"), {}

  student._step = fake_step
  student._ema = lambda teacher, params: f"ema({teacher}, {params})"
  state = learner.LearnerState(train=types.SimpleNamespace(step=0, params="base"), teacher="base")
  for _ in range(6):
    state, _ = student.step(state, None)
  assert seen == ["base"] * 3 + ["ema(base, student@3)"] * 3
  assert state.teacher == "ema(ema(base, student@3), student@6)"


class _Prompts:
  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def select(self, chosen):
    return list(chosen)


def test_sdpo_config_is_sdpos_code_setting():
  c = load_config("sdpo")
  config_lib.validate(c)
  sd = c.self_distill
  assert (sd.sdpo.divergence, sd.sdpo.form, sd.sdpo.top_k) == ("reverse_kl", "topk", 20)
  assert (sd.learning_rate, sd.end_learning_rate, sd.warmup_steps, sd.weight_decay) == (1e-6, 1e-6, 0, 0.01)
  assert (sd.sdpo.teacher, sd.sdpo.ema_rate, sd.sdpo.is_clip) == ("ema", 0.01, 2.0)
  assert (sd.prompts_per_step, sd.group_size, sd.updates_per_batch, sd.mini_batches) == (32, 8, 32, 32)
  assert sd.steps % sd.updates_per_batch == 0 and sd.steps // sd.checkpoint_every == sd.max_to_keep
  assert sd.sdpo.context == "demonstration_else_feedback" and sd.templates.strip_thinking
  # Scored at the rollout temperature (importance weights start at 1); a sibling of 8,192 tokens can teach.
  assert sd.sdpo.loss_temperature == 0 and sd.templates.max_demonstration_chars >= 4 * sd.rollout.max_new_tokens


def test_sdsd_pure_has_no_reference_fallback():
  c = load_config("sdsd_pure")
  config_lib.validate(c)
  assert c.self_distill.sdsd.use_reference is False and c.self_distill.sdsd.context == "demonstration"
  assert load_config("sdsd").self_distill.sdsd.use_reference is True


def test_blank_feedback_ablation_takes_sdpos_settings_and_hides_the_feedback_text(monkeypatch):
  c = load_config("sdpo")
  c.self_distill.methods = "sdpo,sdpo_blank"
  c.eval.models = "base,sdpo,sdpo_blank"
  config_lib.validate(c)
  sdpo = onpolicy_setup.method_spec(c.self_distill, "sdpo")
  blank = onpolicy_setup.method_spec(c.self_distill, "sdpo_blank")
  assert blank.divergence == sdpo.divergence and (blank.teacher, blank.ema_rate) == (sdpo.teacher, sdpo.ema_rate)
  assert blank.context == dataclasses.replace(sdpo.context, blank_feedback=True) and not sdpo.context.blank_feedback

  # Two failed rollouts of one problem: the teacher is shown the sandbox's feedback, or (ablation) only that
  # the attempt failed.
  feedback = "check: expected 3, got 4"
  problem = Problem(task_id="t", question="q", entry_point="f", tests=(TestCase("t0", code="check()"),))
  run = TestRun("t0", Verdict.FAILED, feedback)
  verdict = ProblemResult("t", "", tuple(SampleResult("x", "x", "x", (run,), feedback) for _ in range(2)))
  monkeypatch.setattr(
    rollouts, "evaluate", lambda problems, completions, sandbox, feedback_chars: EvalResult((verdict,))
  )
  monkeypatch.setattr(rollouts, "graded_completion_text", lambda tokenizer, g: "def f(): return 4")
  shown = []
  monkeypatch.setattr(rollouts, "chat_prompt_ids", lambda tokenizer, messages: shown.append(messages) or [1, 2])
  setup, prompts, generations = one_problem_step(problem, teacher_prompt_width=8)
  for spec, wanted, hidden in ((sdpo.context, feedback, None), (blank.context, "The attempt failed.", feedback)):
    shown.clear()
    data = rollouts.build_step_data(setup, spec, prompts, generations, seed=0)
    # The ablation renders the real feedback first (to decide the weight as SDPO does), then shows the blank.
    texts = [m[-1]["content"] for m in shown][spec.blank_feedback :: 1 + spec.blank_feedback]
    assert len(texts) == 2 and all(wanted in t for t in texts) and data.context_fraction == 1.0
    assert hidden is None or not any(hidden in t for t in texts)


def test_mini_batches_take_turns_within_a_rollout_batch(monkeypatch):
  # SDPO's code: one update per mini-batch of whole prompt groups; here 4 prompts x 2 rollouts in 2 slices.
  calls = []

  def fake_collect(setup, spec, params, prompts, *, seed):
    calls.append(params)
    rows = np.arange(8) + 100 * len(calls)
    return types.SimpleNamespace(
      batch={"rows": rows, "prompt": np.repeat(np.arange(4), 2)},
      reward=0.5,
      context_fraction=1.0,
      response_tokens=3.0,
      seconds={},
    )

  monkeypatch.setattr(rollout_source, "collect_step_data", fake_collect)
  monkeypatch.setattr(rollout_source, "process_rows", lambda batch, index, count: batch)
  behaviour = lambda params, batch: {**batch, "behaviour_of": params}  # noqa: E731
  source = rollout_source.RolloutSource(
    None, None, _Prompts(8), 4, 0, lambda b: b, updates_per_batch=4, behaviour=behaviour, mini_batches=2
  )
  state = lambda p: types.SimpleNamespace(train=types.SimpleNamespace(params=p))  # noqa: E731
  batches = [source.next_batch(step, state(f"params@{step}"))[0] for step in range(5)]
  assert [b["prompt"].tolist() for b in batches] == [[0, 0, 1, 1], [2, 2, 3, 3]] * 2 + [[0, 0, 1, 1]]
  assert [int(b["rows"][0]) for b in batches] == [100, 104, 100, 104, 200]
  # Both slices' importance-weight denominators come from the parameters that drew the batch.
  assert [b["behaviour_of"] for b in batches] == ["params@0"] * 4 + ["params@4"]
  assert calls == ["params@0", "params@4"]


def test_mini_batches_must_divide_prompts_and_updates():
  c = load_config("sdpo")
  config_lib.validate(c)
  for prompts, updates, accum in ((32, 30, 1), (30, 32, 1), (32, 32, 16)):  # 32 prompts x 8 rollouts / 32 = 8 rows
    c.self_distill.update(dict(prompts_per_step=prompts, updates_per_batch=updates, grad_accum_steps=accum))
    with pytest.raises(config_lib.ConfigError, match="self_distill.mini_batches"):
      config_lib.validate(c)
