"""The `self_distill` config section -> the on-policy library's objects (methods, templates, learner settings)."""

from __future__ import annotations

import os

import ml_collections

from ssd_jax.config import ConfigError
from ssd_jax.config.self_distill import BLANK_FEEDBACK_ABLATIONS, method_settings
from ssd_jax.onpolicy.learner import LearnerConfig, MethodSpec
from ssd_jax.onpolicy.rollouts import TeacherSpec
from ssd_jax.onpolicy.teacher_context import TeacherTemplates
from ssd_jax.pipeline.training import optimizer_config
from ssd_jax.train.distillation_loss import DivergenceConfig
from ssd_jax.train.metrics import metric_by_step


class NothingDistilledError(RuntimeError):
  """A method trained every step without a teacher context: its model would be the base's, published as trained."""


def method_spec(section: ml_collections.ConfigDict, name: str) -> MethodSpec:
  """The MethodSpec of `self_distill.<name>`; a zero loss temperature reuses the rollout temperature.

  A blank-feedback ablation (`config.self_distill.BLANK_FEEDBACK_ABLATIONS`) takes its method's settings and
  shows the teacher no feedback text.
  """
  m = method_settings(section, name)
  divergence = DivergenceConfig(
    kind=m.divergence,
    beta=m.beta,
    form=m.form,
    top_k=m.top_k if m.form == "topk" else None,
    temperature=m.loss_temperature or section.rollout.temperature,
    is_clip=m.is_clip or None,
    chunk_size=m.chunk_size,
  )
  return MethodSpec(
    name=name,
    teacher=m.teacher,
    ema_rate=m.ema_rate,
    context=TeacherSpec(
      context=m.context, use_reference=m.use_reference, blank_feedback=name in BLANK_FEEDBACK_ABLATIONS
    ),
    divergence=divergence,
  )


def templates_from(section: ml_collections.ConfigDict) -> TeacherTemplates:
  """The teacher's context templates of the `self_distill.templates` section."""
  return TeacherTemplates(**section.templates.to_dict())


def learner_config(config: ml_collections.ConfigDict, out_dir: str) -> LearnerConfig:
  section = config.self_distill
  return LearnerConfig(
    steps=section.steps,
    prompts_per_step=section.prompts_per_step,
    seed=config.seed,
    optimizer=optimizer_config(section),
    out_dir=out_dir,
    checkpoint_every=section.checkpoint_every,
    max_to_keep=section.max_to_keep,
    log_every=section.log_every,
    updates_per_batch=section.updates_per_batch,
    mini_batches=section.mini_batches,
  )


def method_done(model_dir: str) -> bool:
  return os.path.isfile(os.path.join(model_dir, "config.json"))


def fitting_training_prompts(prompt_ids, section: ml_collections.ConfigDict) -> list[int]:
  """Indices of the self_distill prompts within `self_distill.max_prompt_len` and `max_teacher_prompt_len`
  (longer problems are skipped): a rollout its teacher has no context for shows it the student's prompt.

  Raises:
    ConfigError: fewer fit than `self_distill.prompts_per_step`, naming the narrower width's field, the other
      field and the shortest prompt.
  """
  field = "max_prompt_len" if section.max_prompt_len <= section.max_teacher_prompt_len else "max_teacher_prompt_len"
  width = section[field]
  fitting = [i for i, ids in enumerate(prompt_ids) if len(ids) <= width]
  if len(fitting) < section.prompts_per_step:
    shortest = min((len(ids) for ids in prompt_ids), default=0)
    raise ConfigError(
      f"field 'self_distill.{field}' = {width} fits {len(fitting)} of the {len(prompt_ids)} prompts of field "
      f"'self_distill.problems' (the shortest has {shortest} tokens), fewer than field "
      f"'self_distill.prompts_per_step' = {section.prompts_per_step}"
    )
  return fitting


def context_steps(metrics_path: str) -> tuple[int, int]:
  """(training steps logged, those where some rollout's teacher got a context) of a learner's `metrics.jsonl`."""
  fractions = metric_by_step(metrics_path, "context_fraction")
  return len(fractions), sum(1 for value in fractions.values() if value)


def refuse_if_nothing_distilled(name: str, steps: int, with_context: int, metrics_path: str) -> None:
  """Raises NothingDistilledError when `steps` were trained and none had a teacher context.

  Such a teacher was shown the student's own prompt in every row, so the rows were weighted out and the
  student is the base model (up to weight decay); publishing it would report the method as tried.
  """
  if steps and not with_context:
    raise NothingDistilledError(
      f"self_distill method {name!r}: no rollout's teacher got a context in any of its {steps} steps "
      f"(context_fraction 0 at every step of {metrics_path}), so nothing was distilled; its model is not published. "
      "A demonstration teacher needs a rollout that passes or the reference solution (use_reference); every "
      "teacher prompt must fit field 'self_distill.max_teacher_prompt_len'"
    )
