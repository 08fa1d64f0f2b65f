"""The on-policy learner as a library: built from Python on the tiny model, two steps, no CLI; its checkpoints."""

import types

import jax
import numpy as np
import pytest
from flax import nnx

from ssd_jax import process_group
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.evals import Sandbox, SandboxLimits
from ssd_jax.model import Transformer, hf, presets
from ssd_jax.onpolicy.learner import LearnerConfig, MethodSpec, OnPolicyLearner
from ssd_jax.onpolicy.rollouts import RolloutSetup, TeacherSpec
from ssd_jax.onpolicy.teacher_context import TeacherTemplates
from ssd_jax.pipeline.checkpoint_export import export_step
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.tasks import build_task_tokenizer, builtin_problems
from ssd_jax.train.distillation_loss import DivergenceConfig
from ssd_jax.train.ema import copy_params
from ssd_jax.train.loop import Hook
from ssd_jax.train.optimizer import OptimizerConfig


def _host(tree):
  return jax.tree.map(np.array, tree)  # Copies: the step donates the state's buffers.


class _Steps(Hook):
  """Records each step's student and EMA teacher parameters."""

  def __init__(self):
    self.seen = []
    self.student, self.teacher = {}, {}

  def after_step(self, step, state):
    self.seen.append((step, int(state.step), state.teacher is not None))
    self.student[step], self.teacher[step] = _host(state.train.params), _host(state.teacher)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """An SDPO learner (EMA teacher) run for two steps, one per mini-batch of one rollout batch, with a checkpoint at
  each, where the pipeline keeps them."""
  root = tmp_path_factory.mktemp("learner")
  tokenizer_dir = str(build_task_tokenizer(root / "tokenizer"))
  tokenizer = load_tokenizer(tokenizer_dir)
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  graphdef, base = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  before = _host(base)
  prompts = PromptSet.build(builtin_problems("synth", 4, seed=0), tokenizer, system_prompt=None)
  spec = MethodSpec(
    name="sdpo",
    teacher="ema",
    ema_rate=0.05,
    context=TeacherSpec(context="feedback_or_demonstration", use_reference=True),
    divergence=DivergenceConfig(kind="jsd", beta=0.5, form="topk", top_k=8, temperature=1.0, is_clip=2.0),
  )
  hook = _Steps()
  layout = RunLayout(str(root / "run"))
  with Sandbox(SandboxLimits(timeout_s=5, cpu_time_s=5), workers=2) as sandbox:
    setup = RolloutSetup(
      tokenizer=tokenizer,
      sampler=Sampler(graphdef, max_len=prompts.longest() + 8, batch_size=4, pad_id=tokenizer.pad_id or 0),
      sampling=SamplingParams(temperature=1.0),
      max_new_tokens=6,
      group_size=2,
      prompt_width=prompts.longest(),
      teacher_prompt_width=1024,
      sandbox=sandbox,
      templates=TeacherTemplates(max_feedback_chars=300),
    )
    config = LearnerConfig(
      steps=2,
      prompts_per_step=2,
      seed=0,
      optimizer=OptimizerConfig(learning_rate=1e-3, end_learning_rate=1e-4, warmup_steps=0, total_steps=2),
      out_dir=layout.self_distill(spec.name),
      checkpoint_every=1,
      updates_per_batch=2,  # One rollout batch; each update takes one prompt's rollouts (SDPO's mini-batches).
      mini_batches=2,
    )
    params = OnPolicyLearner(graphdef, base, spec, setup, prompts, config, hooks=(hook,)).run()
  return types.SimpleNamespace(
    graphdef=graphdef,
    base=base,
    before=before,
    params=params,
    hook=hook,
    layout=layout,
    tokenizer_dir=tokenizer_dir,
  )


def test_learner_runs_two_steps_from_python(trained):
  assert trained.hook.seen == [(1, 1, True), (2, 2, True)]
  leaves = jax.tree.leaves(trained.params)
  assert all(np.isfinite(np.asarray(x)).all() for x in leaves)
  # A step that scores no token leaves the weights alone, so a change says the teacher taught something.
  assert any(not np.array_equal(np.asarray(a), b) for a, b in zip(leaves, jax.tree.leaves(trained.before)))
  # The base parameters are left intact (the student and the EMA teacher start from copies).
  for a, b in zip(jax.tree.leaves(trained.base), jax.tree.leaves(trained.before)):
    np.testing.assert_array_equal(np.asarray(a), b)


def test_an_intermediate_checkpoint_exports_the_students_weights_at_that_step(trained):
  layout = trained.layout
  ctx = types.SimpleNamespace(
    layout=layout,
    model_dir=layout.model,
    load_model=lambda directory: (trained.graphdef, copy_params(trained.params)),  # The final model.
    tokenizer_dir=trained.tokenizer_dir,
    process_group=process_group.single_process(),
  )
  out = export_step(ctx, "sdpo", 1)
  assert out == layout.model_at_step("sdpo", 1)
  model, _ = hf.load_hf(out, dtype="float32", param_dtype="float32")
  exported = jax.tree.leaves(_host(nnx.split(model)[1]))
  student, teacher = (jax.tree.leaves(saved[1]) for saved in (trained.hook.student, trained.hook.teacher))
  for got, want in zip(exported, student, strict=True):
    np.testing.assert_array_equal(got, want)
  # Step 1's student, neither its EMA teacher nor the final student.
  assert any(not np.array_equal(a, b) for a, b in zip(exported, teacher, strict=True))
  assert any(not np.array_equal(a, b) for a, b in zip(exported, jax.tree.leaves(trained.hook.student[2]), strict=True))
