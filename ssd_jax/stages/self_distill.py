"""The `self_distill` stage: on-policy self-distillation (SDSD / OPSD and SDPO) from the base model.

For each method of `self_distill.methods` whose model is not written yet, an `onpolicy.OnPolicyLearner` trains
a student from the run's base model, with held-out pass@k at step 0 and every `eval_every` steps. Metrics go to
`self_distill/<method>/logs/metrics.jsonl` (+ TensorBoard), held-out summaries to
`self_distill/<method>/heldout.jsonl`, checkpoints (student state and an EMA teacher) to
`self_distill/<method>/checkpoints`, so a killed run resumes at its last checkpoint with the same prompts and
seeds; the final student is written as `models/<method>` for the `eval` and `report` stages. First, the teacher
diagnostic (`pipeline.teacher_check`) measures whether the in-context teacher beats the student at all.
"""

from __future__ import annotations

import os

from ssd_jax import config as config_lib
from ssd_jax import process_group
from ssd_jax.config.self_distill import method_names
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.evals import Sandbox
from ssd_jax.evals.shared_sandbox import shared
from ssd_jax.onpolicy.heldout import HeldoutHook, HeldoutSet
from ssd_jax.onpolicy.learner import OnPolicyLearner
from ssd_jax.onpolicy.rollouts import RolloutSetup
from ssd_jax.pipeline import model_io, onpolicy_setup, training
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.reference_check import drop_failing_references
from ssd_jax.pipeline.sampling_setup import sampling_params
from ssd_jax.pipeline.teacher_check import diagnose_teacher


def _training_prompts(ctx: RunContext) -> PromptSet:
  section = ctx.config.self_distill
  prompts = ctx.prompts(section.problems)
  return prompts.select(onpolicy_setup.fitting_training_prompts(prompts.ids, section))


def run(ctx: RunContext) -> None:
  """Trains every method of `self_distill.methods` whose model is not written yet."""
  config = ctx.config
  section = config.self_distill
  prompts = _training_prompts(ctx)
  graphdef, base = ctx.load_model(ctx.base_model_dir)
  cfg = model_io.model_config_of(graphdef, base)
  heldout = None
  if section.eval_every:
    # Dev problems only: the test problems are for the final numbers, and curves seen while training
    # can steer choices.
    problems = ctx.prompts(config.eval.problems)
    dev = set(ctx.eval_split(problems).dev)
    problems = problems.select(
      [i for i, task_id in enumerate(problems.task_ids) if task_id in dev][: section.eval_problems]
    )
    if len(problems) < section.eval_problems:
      print(
        f"[self_distill] held-out curve on all {len(problems)} dev problems: fewer than field "
        f"'self_distill.eval_problems' = {section.eval_problems}"
      )
    heldout = HeldoutSet(
      problems,
      ctx.sampler(graphdef, cfg, problems.ids, config.eval_sampling),
      sampling_params(config.eval_sampling),
      n=section.eval_samples,
      max_new_tokens=config.eval_sampling.max_new_tokens,
      ks=config_lib.eval_ks(config),
    )
  # Every process builds the whole batch from the same verdicts; each grades its share of the rollouts.
  with Sandbox(ctx.sandbox_limits, ctx.sandbox_workers, allow_weak_sandbox=ctx.sandbox_allow_weak) as pool:
    sandbox = shared(pool, ctx.process_group)
    setup = RolloutSetup(
      tokenizer=ctx.tokenizer,
      sampler=ctx.sampler(graphdef, cfg, prompts.ids, section.rollout),
      sampling=sampling_params(section.rollout),
      max_new_tokens=section.rollout.max_new_tokens,
      group_size=section.group_size,
      prompt_width=prompts.longest(),
      teacher_prompt_width=section.max_teacher_prompt_len,
      sandbox=sandbox,
      templates=onpolicy_setup.templates_from(section),
    )
    specs = {name: onpolicy_setup.method_spec(section, name) for name in method_names(section)}
    if section.diagnostic_problems or any(spec.context.use_reference for spec in specs.values()):
      checked = drop_failing_references(prompts, sandbox)
      prompts = checked.prompts
      failed = f" (e.g. {list(checked.failed[:3])}), which are not shown as correct" if checked.failed else ""
      print(f"[self_distill] {len(checked.failed)} of {checked.graded} reference solutions fail their tests{failed}")
    if section.diagnostic_problems:
      diagnose_teacher(ctx, graphdef, base, cfg, prompts, sandbox, setup.templates)
    for name in method_names(section):
      if onpolicy_setup.method_done(ctx.layout.model(name)):
        print(f"[self_distill] {name}: {ctx.layout.model(name)} exists, skipping")
        continue
      spec = specs[name]
      out_dir = ctx.layout.self_distill(name)
      speed, profile = training.onpolicy_speed_hooks(ctx, setup, ctx.layout.profile("self_distill", name))
      hooks = (speed, profile)
      if heldout is not None:
        # The held-out evaluation's time is not training: tokens/s and step time leave it out.
        hooks += (
          speed.untimed(
            HeldoutHook(
              heldout,
              lambda state: state.train.params,
              ctx.tokenizer,
              sandbox,
              seed=config.seed,
              every=section.eval_every,
              last_step=section.steps,
              out_dir=out_dir,
              is_coordinator=ctx.is_coordinator,
            )
          ),
        )
      learner = OnPolicyLearner(
        graphdef,
        base,
        spec,
        setup,
        prompts,
        onpolicy_setup.learner_config(config, out_dir),
        mesh=ctx.mesh,
        rules=ctx.rules,
        hooks=hooks,
      )
      print(
        f"[self_distill] {name}: teacher={spec.teacher} context={spec.context.context} "
        f"loss={spec.divergence.kind}/{spec.divergence.form}, {section.steps} steps"
      )
      params = learner.run()
      # Read by process 0, decided by every process alike.
      metrics_path = os.path.join(out_dir, "logs", "metrics.jsonl")
      steps, with_context = process_group.on_coordinator(
        ctx.process_group, lambda path=metrics_path: onpolicy_setup.context_steps(path)
      )
      onpolicy_setup.refuse_if_nothing_distilled(name, steps, with_context, metrics_path)
      ctx.export_model(params, cfg, name)
