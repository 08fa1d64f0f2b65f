"""The `self_distill` config section: on-policy self-distillation (SDSD / OPSD and SDPO).

Shared fields say how long to train, how many rollouts to draw and how often to evaluate; the `sdsd`
and `sdpo` subsections say what the teacher is and which divergence pulls the student towards it.
Defaults are the published recipes:

* SDSD / OPSD: teacher = frozen initial model shown a correct demonstration (a successful sibling or the
  reference solution), full-vocabulary JSD(beta = 0.5), the sampling temperature reused in the loss.
* SDPO: teacher = EMA of the student (rate 0.05) shown the sandbox's feedback and/or a successful
  sibling, student top-k 100 + tail bucket, JSD(0.5), importance weight clipped at 2.
"""

from __future__ import annotations

import math

import ml_collections

from ssd_jax.config.schema import Check, comma_list
from ssd_jax.config.ssd import problems_checks, problems_section
from ssd_jax.config.training import optimizer_checks, profile_steps_errors, schedule_errors
from ssd_jax.onpolicy.teacher_context import CONTEXT_KINDS, TeacherTemplates
from ssd_jax.train.distillation_loss import DIVERGENCE_FORMS
from ssd_jax.train.divergences import DIVERGENCE_KINDS

METHODS = ("sdsd", "sdpo")
# Ablations trained and evaluated as models of their own: name -> the method whose settings they take.
# 'sdpo_blank' is SDPO with the feedback text blanked (the teacher is told only that an attempt failed), the
# control that shows whether SDPO's teacher uses what the feedback says.
BLANK_FEEDBACK_ABLATIONS = {"sdpo_blank": "sdpo"}
TEACHERS = ("frozen", "ema", "live")


def _method(
  *, teacher: str, context: str, use_reference: bool, form: str, top_k: int, loss_temperature: float, is_clip: float
) -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.teacher = teacher  # 'frozen' (initial weights), 'ema' (of the student) or 'live' (the student itself).
  m.ema_rate = 0.05  # Student weight per EMA update, for teacher = 'ema'.
  m.context = context  # One of CONTEXT_KINDS.
  m.use_reference = use_reference  # Fall back to the problem's reference solution as demonstration.
  m.divergence = "jsd"  # 'forward_kl' = KL(teacher||student), 'reverse_kl' = KL(student||teacher), 'jsd'.
  m.beta = 0.5  # JSD teacher weight.
  m.form = form  # 'full', 'chunked', 'topk' or 'sampled'.
  m.top_k = top_k  # Student top-k buckets (+ one tail) for form 'topk'; ignored otherwise.
  m.loss_temperature = loss_temperature  # 0 reuses the rollout sampling temperature.
  m.is_clip = is_clip  # Importance-weight clip; 0 disables importance weighting.
  m.chunk_size = 1024  # Tokens per chunk of the chunked loss forms.
  return m


def add_sections(config: ml_collections.ConfigDict) -> None:
  """Adds the `self_distill` section's schema and defaults."""
  config.self_distill = c = ml_collections.ConfigDict()
  c.methods = "sdsd,sdpo"  # Comma-separated, from METHODS; each trains from the base model.
  c.problems = problems_section("synth", num_problems=256)
  c.steps = 100
  c.prompts_per_step = 8  # Distinct problems per step.
  c.group_size = 4  # G rollouts per problem (siblings for demonstrations).
  c.max_prompt_len = 512  # Student prompt width; longer problems are skipped.
  c.max_teacher_prompt_len = 1024  # Teacher prompt width; longer contexts fall back to no teacher.

  c.rollout = ml_collections.ConfigDict(
    dict(temperature=1.1, top_k=0, top_p=1.0, min_p=0.0, max_new_tokens=256, batch_size=32)
  )

  c.learning_rate = 1e-6
  c.end_learning_rate = 1e-7
  c.warmup_steps = 0
  c.b1 = 0.9
  c.b2 = 0.95
  c.weight_decay = 0.0
  c.grad_clip_norm = 1.0  # 0 disables clipping.
  c.grad_accum_steps = 1
  c.updates_per_batch = 1  # Optimizer steps per rollout batch (SDPO's code takes several).
  # Slices of the rollout batch, whole prompt groups each, that the updates take in turn (SDPO's code: one
  # update per mini-batch of ppo_mini_batch_size prompts); 1: every update takes the whole batch.
  c.mini_batches = 1

  c.eval_every = 25  # Steps between held-out evaluations (also after the last step); 0 disables them.
  c.eval_problems = 32  # The first N dev problems of `eval.problems` (`eval/split.json`).
  c.eval_samples = 8  # Samples per problem (at eval_sampling's decoding parameters).
  c.checkpoint_every = 25
  c.max_to_keep = 2  # Newest checkpoints kept; `eval.checkpoints` can evaluate only these.
  c.log_every = 1
  c.profile_steps = ""  # "START,STOP": a jax.profiler trace of steps START+1..STOP in self_distill/<method>/profile.
  # Before training: teacher pass@1 (shown the reference / feedback) vs the student's on the first N training
  # problems, written to self_distill/teacher_diagnostic.json; 0 skips it.
  c.diagnostic_problems = 8
  c.diagnostic_samples = 4  # Samples per problem and prompt kind (rollout decoding).

  templates = TeacherTemplates()
  c.templates = ml_collections.ConfigDict(
    dict(
      demonstration=templates.demonstration,
      feedback=templates.feedback,
      both=templates.both,
      max_feedback_chars=templates.max_feedback_chars,
      max_demonstration_chars=templates.max_demonstration_chars,
      strip_thinking=templates.strip_thinking,
    )
  )

  c.sdsd = _method(
    teacher="frozen",
    context="demonstration",
    use_reference=True,
    form="chunked",
    top_k=0,
    loss_temperature=0.0,
    is_clip=0.0,
  )
  c.sdpo = _method(
    teacher="ema",
    context="demonstration_else_feedback",  # SDPO's environment_feedback_only_without_solution = True.
    use_reference=False,
    form="topk",
    top_k=100,
    loss_temperature=0.0,  # SDPO's code scores at the rollout temperature.
    is_clip=2.0,
  )


def method_names(section: ml_collections.ConfigDict) -> tuple[str, ...]:
  return comma_list(section.methods)


def method_settings(section: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The settings section of method `name` (an ablation reads the method it ablates)."""
  return section[BLANK_FEEDBACK_ABLATIONS.get(name, name)]


def _method_checks(name: str) -> list[Check]:
  p = f"self_distill.{name}"
  return [
    Check(f"{p}.teacher", lambda v: v in TEACHERS, f"one of {TEACHERS}"),
    Check(f"{p}.ema_rate", lambda v: 0 <= v <= 1, "a rate in [0, 1]"),
    Check(f"{p}.context", lambda v: v in CONTEXT_KINDS, f"one of {CONTEXT_KINDS}"),
    Check(f"{p}.divergence", lambda v: v in DIVERGENCE_KINDS, f"one of {DIVERGENCE_KINDS}"),
    Check(f"{p}.beta", lambda v: 0 <= v <= 1, "beta in [0, 1]"),
    Check(f"{p}.form", lambda v: v in DIVERGENCE_FORMS, f"one of {DIVERGENCE_FORMS}"),
    Check(f"{p}.top_k", lambda v: v >= 0, "a bucket count >= 0 (>= 1 for form 'topk')"),
    Check(f"{p}.loss_temperature", lambda v: 0 <= v < math.inf, "a finite temperature >= 0 (0 reuses the rollout's)"),
    Check(f"{p}.is_clip", lambda v: 0 <= v < math.inf, "a finite clip >= 0 (0 disables importance weighting)"),
    Check(f"{p}.chunk_size", lambda v: v >= 1, "a chunk size >= 1"),
  ]


_BRACES = (
  "each a plain {name} (no index, attribute, conversion or format spec) and no other field (a literal brace is "
  "written {{ or }})"
)
_TEMPLATE_FIELDS = {
  "demonstration": f"text with {{prompt}} and {{demonstration}}, {_BRACES}",
  "feedback": f"text with {{prompt}} and {{feedback}}, {_BRACES}",
  "both": f"text with {{prompt}}, {{demonstration}} and {{feedback}}, {_BRACES}",
  "max_feedback_chars": "a length >= 1",
  "max_demonstration_chars": "a length >= 1",
}


def _template_ok(field: str, value) -> bool:
  """Whether the stage's TeacherTemplates takes `value` for `field` (it refuses what would not render)."""
  try:
    TeacherTemplates(**{field: value})
  except ValueError:
    return False
  return True


def _template_checks() -> list[Check]:
  return [
    Check(f"self_distill.templates.{field}", lambda v, field=field: _template_ok(field, v), expected)
    for field, expected in _TEMPLATE_FIELDS.items()
  ]


def checks() -> list[Check]:
  return [
    Check(
      "self_distill.methods",
      lambda v: bool(v.strip()) and all(m.strip() in (*METHODS, *BLANK_FEEDBACK_ABLATIONS) for m in v.split(",")),
      f"comma-separated methods from {(*METHODS, *BLANK_FEEDBACK_ABLATIONS)}",
    ),
    *problems_checks("self_distill.problems"),
    Check("self_distill.prompts_per_step", lambda v: v >= 1, "at least 1 prompt per step"),
    Check("self_distill.group_size", lambda v: v >= 1, "at least 1 rollout per prompt"),
    Check("self_distill.max_prompt_len", lambda v: v >= 1, "a width >= 1"),
    Check("self_distill.max_teacher_prompt_len", lambda v: v >= 1, "a width >= 1"),
    Check(
      "self_distill.rollout.temperature",
      lambda v: 0 < v < math.inf,
      "a finite temperature > 0 (on-policy rollouts sample)",
    ),
    Check("self_distill.rollout.top_p", lambda v: 0 < v <= 1, "top_p in (0, 1]"),
    Check("self_distill.rollout.min_p", lambda v: 0 <= v < 1, "min_p in [0, 1)"),
    Check("self_distill.rollout.max_new_tokens", lambda v: v >= 1, "at least 1 new token"),
    Check("self_distill.rollout.batch_size", lambda v: v >= 1, "a batch size >= 1"),
    *optimizer_checks("self_distill"),
    Check("self_distill.updates_per_batch", lambda v: v >= 1, "at least 1 update per rollout batch"),
    Check("self_distill.mini_batches", lambda v: v >= 1, "at least 1 mini-batch per rollout batch"),
    Check("self_distill.eval_every", lambda v: v >= 0, "a step interval >= 0 (0 disables)"),
    Check("self_distill.eval_problems", lambda v: v >= 1, "at least 1 problem"),
    Check("self_distill.eval_samples", lambda v: v >= 1, "at least 1 sample per problem"),
    Check("self_distill.diagnostic_problems", lambda v: v >= 0, "a problem count >= 0 (0 skips the diagnostic)"),
    Check(
      "self_distill.diagnostic_samples",
      lambda v: v >= 2,
      "at least 2 samples per problem (the feedback comparison shows the teacher one failed sample's feedback "
      "and counts the student's pass@1 on the others)",
    ),
    *_template_checks(),
    *_method_checks("sdsd"),
    *_method_checks("sdpo"),
  ]


def cross_errors(config: ml_collections.ConfigDict) -> list[str]:
  section = config.self_distill
  errors = schedule_errors(section, "self_distill") + profile_steps_errors(section, "self_distill")
  minis = section.mini_batches  # >= 1: cross checks run after the value checks passed.
  if section.prompts_per_step % minis or section.updates_per_batch % minis:
    errors.append(
      f"field 'self_distill.mini_batches' = {minis} must divide 'self_distill.prompts_per_step' = "
      f"{section.prompts_per_step} (each mini-batch holds whole prompt groups) and 'self_distill.updates_per_batch' "
      f"= {section.updates_per_batch} (each mini-batch gets as many updates)"
    )
  elif (update := rollouts_per_update(section))[2] % section.grad_accum_steps:
    fields, values, rows = update
    errors.append(
      f"{fields} = {values} = {rows} rollouts per update are not divisible by 'self_distill.grad_accum_steps' = "
      f"{section.grad_accum_steps}"
    )
  settings = {BLANK_FEEDBACK_ABLATIONS.get(m, m) for m in method_names(section)}
  for name in sorted(settings & set(METHODS)):  # An unknown method is the value check's error.
    if section.group_size < 2 and section[name].context == "demonstration" and not section[name].use_reference:
      errors.append(
        f"field 'self_distill.group_size' = {section.group_size} leaves method {name!r} no sibling rollout to "
        f"demonstrate, and 'self_distill.{name}.use_reference' is False: its teacher would see nothing (the "
        "student would not move)"
      )
    if section[name].form == "topk" and section[name].top_k < 1:
      errors.append(f"field 'self_distill.{name}.top_k' = {section[name].top_k} must be >= 1 for form 'topk'")
    if section[name].form == "sampled":
      errors += _sampled_form_errors(section, name)
  return errors


def ema_precision_errors(config: ml_collections.ConfigDict) -> list[str]:
  """An EMA teacher in bfloat16 weights does not move: each update changes a weight by rate x (student -
  teacher), below bfloat16's resolution (1/256 of the weight) unless the two differ by more than 1 / (256 x
  rate) of it, so the teacher stays at the base while the student drifts (checked where self_distill runs)."""
  if config.model.param_dtype != "bfloat16":
    return []
  section = config.self_distill
  ema = []
  for n in sorted({BLANK_FEEDBACK_ABLATIONS.get(m, m) for m in method_names(section)} & set(METHODS)):
    if section[n].teacher == "ema" and 0 < section[n].ema_rate < 1:
      methods = [m for m in method_names(section) if BLANK_FEEDBACK_ABLATIONS.get(m, m) == n]
      ema.append(f"{', '.join(methods)} (field 'self_distill.{n}.ema_rate' = {section[n].ema_rate})")
  if not ema:
    return []
  return [
    f"field 'model.param_dtype' = 'bfloat16' cannot hold the EMA teacher of self_distill methods {'; '.join(ema)}: "
    "an update moves a weight by rate x (student - teacher), which rounds away in bfloat16 unless the two differ "
    "by more than 1 / (256 x rate) of the weight, so the teacher would stay the base model; use 'float32' "
    "(model.dtype may stay bfloat16)"
  ]


def rollouts_per_update(section: ml_collections.ConfigDict) -> tuple[str, str, int]:
  """The fields that size one update's rollouts (a step's, or one mini-batch of them), their values, and the count."""
  p, g, m = section.prompts_per_step, section.group_size, section.mini_batches
  if m == 1:
    return "fields 'self_distill.prompts_per_step' x 'self_distill.group_size'", f"{p} x {g}", p * g
  fields = "fields 'self_distill.prompts_per_step' / 'self_distill.mini_batches' x 'self_distill.group_size'"
  return fields, f"{p} / {m} x {g}", p // m * g


def _sampled_form_errors(section: ml_collections.ConfigDict, name: str) -> list[str]:
  """The sampled-token estimator is unbiased only for tokens the student drew at the loss temperature,
  untruncated (`train.sampled_divergence`); other rollouts would optimise another quantity, silently."""
  rollout, loss_temperature = section.rollout, section[name].loss_temperature
  mismatches = [
    f"'self_distill.rollout.{field}' = {value}"
    for field, value, off in (("top_k", rollout.top_k, 0), ("top_p", rollout.top_p, 1.0), ("min_p", rollout.min_p, 0.0))
    if value != off
  ]
  if loss_temperature not in (0, rollout.temperature):
    mismatches.append(
      f"'self_distill.{name}.loss_temperature' = {loss_temperature} is not the rollout's "
      f"{rollout.temperature} (0 reuses it)"
    )
  if not mismatches:
    return []
  return [
    f"field 'self_distill.{name}.form' = 'sampled' estimates the divergence from tokens the student drew at the "
    f"loss temperature without truncation, but {', '.join(mismatches)}; use form 'full' or 'topk', or those rollouts"
  ]
