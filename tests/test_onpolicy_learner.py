"""The on-policy learner as a library: built from Python on the tiny model, two steps, no CLI, no workdir."""

import jax
import numpy as np
from flax import nnx

from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.evals import Sandbox, SandboxLimits
from ssd_jax.model import Transformer, presets
from ssd_jax.onpolicy.learner import LearnerConfig, MethodSpec, OnPolicyLearner
from ssd_jax.onpolicy.rollouts import RolloutSetup, TeacherSpec
from ssd_jax.onpolicy.teacher_context import TeacherTemplates
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.tasks import build_task_tokenizer, builtin_problems
from ssd_jax.train.distillation_loss import DivergenceConfig
from ssd_jax.train.loop import Hook
from ssd_jax.train.optimizer import OptimizerConfig


class _Steps(Hook):
  def __init__(self):
    self.seen = []

  def after_step(self, step, state):
    self.seen.append((step, int(state.step), state.teacher is not None))


def test_learner_runs_two_steps_from_python(tmp_path):
  tokenizer = load_tokenizer(str(build_task_tokenizer(tmp_path / "tokenizer")))
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  graphdef, base = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  before = jax.tree.map(np.asarray, base)
  prompts = PromptSet.build(builtin_problems("synth", 4, seed=0), tokenizer, system_prompt=None)
  spec = MethodSpec(
    name="sdpo",
    teacher="ema",
    ema_rate=0.05,
    context=TeacherSpec(context="feedback_or_demonstration", use_reference=True),
    divergence=DivergenceConfig(kind="jsd", beta=0.5, form="topk", top_k=8, temperature=1.0),
  )
  hook = _Steps()
  with Sandbox(SandboxLimits(timeout_s=5, cpu_time_s=5), workers=2) as sandbox:
    setup = RolloutSetup(
      tokenizer=tokenizer,
      sampler=Sampler(graphdef, max_len=prompts.longest() + 8, batch_size=4, pad_id=tokenizer.pad_id or 0),
      sampling=SamplingParams(temperature=1.0),
      max_new_tokens=6,
      group_size=2,
      prompt_width=prompts.longest(),
      teacher_prompt_width=320,
      sandbox=sandbox,
      templates=TeacherTemplates(max_feedback_chars=300),
    )
    config = LearnerConfig(
      steps=2,
      prompts_per_step=2,
      seed=0,
      optimizer=OptimizerConfig(learning_rate=1e-3, end_learning_rate=1e-4, warmup_steps=0, total_steps=2),
    )
    params = OnPolicyLearner(graphdef, base, spec, setup, prompts, config, hooks=(hook,)).run()
  assert hook.seen == [(1, 1, True), (2, 2, True)]
  leaves = jax.tree.leaves(params)
  assert all(np.isfinite(np.asarray(x)).all() for x in leaves)
  assert any(not np.array_equal(np.asarray(a), b) for a, b in zip(leaves, jax.tree.leaves(before)))
  # The base parameters are left intact (the student and the EMA teacher start from copies).
  for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(before)):
    np.testing.assert_array_equal(np.asarray(a), b)
