"""SDPO's code-generation setting: feedback only without a successful sibling, `<think>` stripped, several
updates per rollout batch, and the shipped configs' paper-faithful defaults."""

import importlib.util
import os
import types

from ssd_jax import config as config_lib
from ssd_jax.onpolicy import learner
from ssd_jax.onpolicy.teacher_context import Attempt, TeacherTemplates, choose_contexts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


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
  assert kept[0].demonstration.startswith("<think>")


def test_rollouts_are_reused_for_updates_per_batch(monkeypatch):
  calls = []

  def fake_collect(setup, spec, params, prompts, *, seed):
    calls.append((params, seed))
    return types.SimpleNamespace(
      batch={"rows": len(calls)}, reward=0.5, context_fraction=1.0, response_tokens=3.0, seconds={}
    )

  monkeypatch.setattr(learner, "collect_step_data", fake_collect)
  monkeypatch.setattr(learner, "process_rows", lambda batch, index, count: batch)
  source = learner.RolloutSource(None, None, _Prompts(8), 2, 0, lambda b: b, updates_per_batch=3)
  state = lambda p: types.SimpleNamespace(train=types.SimpleNamespace(params=p))  # noqa: E731
  batches = [source.next_batch(step, state(f"params@{step}"))[0]["rows"] for step in range(7)]
  assert batches == [1, 1, 1, 2, 2, 2, 3]
  # Each rollout batch is drawn by the student of its first step, with the seed of its batch index.
  assert [p for p, _ in calls] == ["params@0", "params@3", "params@6"]
  assert [s for _, s in calls] == [learner.step_seed(0, j) for j in range(3)]


class _Prompts:
  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def select(self, chosen):
    return list(chosen)


def test_sdpo_config_is_sdpos_code_setting():
  c = _load("sdpo")
  config_lib.validate(c)
  sd = c.self_distill
  assert (sd.sdpo.divergence, sd.sdpo.form, sd.sdpo.top_k) == ("reverse_kl", "topk", 20)
  assert (sd.learning_rate, sd.end_learning_rate, sd.warmup_steps) == (1e-6, 1e-6, 0)
  assert sd.updates_per_batch > 1
  assert sd.sdpo.context == "demonstration_else_feedback" and sd.templates.strip_thinking


def test_sdsd_pure_has_no_reference_fallback():
  c = _load("sdsd_pure")
  config_lib.validate(c)
  assert c.self_distill.sdsd.use_reference is False and c.self_distill.sdsd.context == "demonstration"
  assert _load("sdsd").self_distill.sdsd.use_reference is True
