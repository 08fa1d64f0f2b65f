"""What a run's stages need from their inputs, checked before any work: widths within the model's positions,
the task tokenizer's vocabulary, batches the plan's slice can split, problem files that load, training
problems disjoint from evaluation problems, a sandbox for the generated code, and (with the base model's
tokenizer at hand) prompts that fit the model.

Each would otherwise fail, or quietly mislead, only after hours of pre-training or sampling.
"""

from __future__ import annotations

import contextlib

import ml_collections

from ssd_jax import config as config_lib
from ssd_jax.config.schema import get
from ssd_jax.config.self_distill import method_names, method_settings
from ssd_jax.data.chat import format_user_prompt
from ssd_jax.data.prompt_set import chat_prompt_ids
from ssd_jax.evals import IsolationError, Sandbox
from ssd_jax.onpolicy.teacher_context import ContextChoice, feedback_context, teacher_messages
from ssd_jax.pipeline import plan_programs, problems
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.onpolicy_setup import fitting_training_prompts, templates_from
from ssd_jax.pipeline.sampling_setup import synthesis_prompts_that_fit, unfit_eval_prompt_error

# Stage -> the problem sections it reads.
_STAGE_PROBLEMS = {
  "synthesize": ("synthesize.problems",),
  "self_distill": ("self_distill.problems", "eval.problems"),
  "eval": ("eval.problems",),
}


# Problem sections a model trains on: none of their problems may be an evaluation problem.
_TRAINING_PROBLEMS = ("synthesize.problems", "self_distill.problems")
# The training stage whose model `eval.models` names -> the problems that model trained on.
_TRAINED_ON = {"sft": "synthesize.problems", "self_distill": "self_distill.problems"}


def input_errors(ctx: RunContext, names: tuple[str, ...]) -> list[str]:
  """Inputs the stages would fail on only after hours of work: lengths past the model, a vocabulary the
  pretrain stage's tokenizer does not have, batches the plan's slice cannot split, unreadable problems, no
  sandbox, a tokenizer that does not load, prompts too long for the model."""
  config, positions = ctx.config, ctx.model_cfg.max_position_embeddings
  errors = []
  sections = {section for name in names for section in _STAGE_PROBLEMS.get(name, ())}
  for decoding in config_lib.decoding_sections(config, names):
    new_tokens = get(config, decoding).max_new_tokens
    if new_tokens >= positions:
      errors.append(
        f"field '{decoding}.max_new_tokens' = {new_tokens} leaves no room for a prompt in the model's "
        f"{positions} positions"
      )
  if "self_distill" in names:
    errors += _rollout_width_errors(config, positions)
  if "pretrain" in names:
    errors += _vocab_errors(ctx)
  if "plan" in names:
    errors += _plan_batch_errors(ctx)
  loaded = {}
  if sections & set(_TRAINING_PROBLEMS) and "eval.problems" not in sections:
    # What training must not see, though this run does not evaluate: checked when it loads.
    with contextlib.suppress(OSError, ValueError):
      loaded["eval.problems"] = problems.load_problems(get(config, "eval.problems"), ctx.seed)
  for prefix in sorted(sections):
    try:
      loaded[prefix] = problems.load_problems(get(config, prefix), ctx.seed)
    except (OSError, ValueError) as e:
      errors.append(f"field '{prefix}': {e}")
      continue
    if prefix == "self_distill.problems" and len(loaded[prefix]) < config.self_distill.prompts_per_step:
      errors.append(
        f"field 'self_distill.prompts_per_step' = {config.self_distill.prompts_per_step} exceeds the "
        f"{len(loaded[prefix])} problems of field 'self_distill.problems'"
      )
    for problem in loaded[prefix]:  # The prompt style may have no wording for a problem (lcb_release).
      try:
        format_user_prompt(problem, config.prompting.include_public_tests, config.prompting.style)
      except ValueError as e:
        errors.append(f"field '{prefix}': {e}")
        break
    untested = [p.task_id for p in loaded[prefix] if not p.tests]
    if prefix == "eval.problems" and untested:
      errors.append(f"field 'eval.problems': {len(untested)} problems have no tests to grade, e.g. {untested[:3]}")
    if prefix == "self_distill.problems":
      errors += _contextless_problem_errors(config, loaded[prefix])
    if prefix == "eval.problems" and _evaluates(config, names) and len(loaded[prefix]) < 2:
      errors.append(
        f"field 'eval.problems' gives {len(loaded[prefix])} problem(s), but evaluation splits them into dev and "
        "test parts (field 'eval.split'): give at least 2"
      )
  if "eval" in names:
    errors += _trained_on_errors(ctx, loaded, sections)
  for prefix in _TRAINING_PROBLEMS:
    shared = problems.shared_problems(loaded.get(prefix, []), loaded.get("eval.problems", []))
    if shared:
      errors.append(
        f"field '{prefix}': {len(shared)} of its problems are evaluation problems too (field 'eval.problems'; same "
        f"id, statement or reference solution), e.g. {shared[:3]}: training on them would score the model on "
        "what it trained on. Use disjoint problem sets (e.g. problems.half 'a' for training and 'b' for evaluation)"
      )
  if not errors and "pretrain" not in names and set(names) & set(config_lib.MODEL_STAGES):
    errors += _prompt_errors(ctx, names)  # Renders the problems: only once they load.
  return errors + _sandbox_errors(ctx, names)


def _trained_on_errors(ctx: RunContext, loaded: dict, tried: set[str]) -> list[str]:
  """Loads into `loaded` the problems the evaluated models trained on, which an evaluation run must compare with
  its own even when their training ran in an earlier run (the training stages' fingerprints hold these fields,
  so they are the ones trained on); an error for a section that does not load (unless `tried` already)."""
  errors = []
  for stage in config_lib.evaluated_training_stages(ctx.config):
    prefix = _TRAINED_ON[stage]
    if prefix in tried:
      continue
    try:
      loaded[prefix] = problems.load_problems(get(ctx.config, prefix), ctx.seed)
    except (OSError, ValueError) as e:
      errors.append(
        f"field '{prefix}': {e} (the problems the evaluated models trained on: evaluation checks that none of "
        "them is an evaluation problem)"
      )
  return errors


def _contextless_problem_errors(config: ml_collections.ConfigDict, training: list) -> list[str]:
  """Training problems a method's teacher can see nothing for: without tests a rollout never passes (no sibling
  demonstration, no feedback), so only the reference solution of a method that shows it is left. Methods that
  lack context on the same problems share one error."""
  section = config.self_distill
  methods_by_gap: dict[tuple[bool, tuple[str, ...]], list[str]] = {}
  for name in method_names(section):
    settings = method_settings(section, name)
    shows_reference = settings.use_reference and settings.context != "feedback"
    bare = tuple(p.task_id for p in training if not p.tests and not (shows_reference and p.reference_solution.strip()))
    if bare:
      methods_by_gap.setdefault((shows_reference, bare), []).append(name)
  errors = []
  for (shows_reference, bare), names in methods_by_gap.items():
    teachers = f"method {names[0]!r}'s teacher" if len(names) == 1 else f"the teachers of methods {names}"
    errors.append(
      f"field 'self_distill.problems': {len(bare)} problems have no tests"
      + (" and no reference solution" if shows_reference else "")
      + f", e.g. {list(bare[:3])}: {teachers} would see no demonstration and no feedback for them"
    )
  return errors


def _evaluates(config: ml_collections.ConfigDict, names: tuple[str, ...]) -> bool:
  """Whether a stage splits `eval.problems` into dev and test: eval, and self_distill's held-out curve."""
  return "eval" in names or ("self_distill" in names and config.self_distill.eval_every > 0)


def _sandbox_errors(ctx: RunContext, names: tuple[str, ...]) -> list[str]:
  """A sandbox starts as the stages that run generated code start theirs: the pretrain stage (the feedback of
  its teacher-layout examples), self_distill (rollout feedback) and eval (grading)."""
  config = ctx.config
  runs_code = [n for n in names if n in ("self_distill", "eval") or (n == "pretrain" and config.pretrain.context_share)]
  if not runs_code or ctx.sandbox_allow_weak:
    return []
  try:  # One worker, never started: the isolation probe alone (a tenth of a second).
    with Sandbox(ctx.sandbox_limits, workers=1):
      pass
  except IsolationError as e:
    return [f"stages {runs_code} run generated code, but {e}"]
  return []


def _prompt_errors(ctx: RunContext, names: tuple[str, ...]) -> list[str]:
  """With the base model's tokenizer (`tokenizer.path` or `model.hf_dir`; a pretrain run builds its own): a
  tokenizer that loads, and prompts the sampling stages can fit in the model's positions."""
  config, positions = ctx.config, ctx.model_cfg.max_position_embeddings
  field = "tokenizer.path" if config.tokenizer.path else "model.hf_dir"
  try:
    ctx.tokenizer  # noqa: B018  Loads it, once for the whole run.
  except config_lib.ConfigError as e:
    return [str(e)]
  except (OSError, ValueError, RuntimeError) as e:  # sentencepiece reports a corrupt model as RuntimeError.
    return [f"field '{field}' = {ctx.tokenizer_dir!r}: {e}"]
  errors = []
  if "synthesize" in names:
    prompts = ctx.prompts(config.synthesize.problems)
    try:
      fitting = synthesis_prompts_that_fit(prompts.ids, positions, config)
    except config_lib.ConfigError as e:
      errors.append(str(e))
    else:
      shortest = min(len(prompts.ids[i]) for i in fitting)
      if "sft" in names and shortest >= config.sft.seq_len:  # An SFT row keeps seq_len + 1 tokens of a sample.
        errors.append(
          f"field 'sft.seq_len' = {config.sft.seq_len} leaves no response token of any synthesized sample in a row: "
          f"the shortest prompt of field 'synthesize.problems' has {shortest} tokens"
        )
  if "self_distill" in names:
    prompts = ctx.prompts(config.self_distill.problems)
    try:
      fitting = fitting_training_prompts(prompts.ids, config.self_distill)
    except config_lib.ConfigError as e:
      errors.append(str(e))
    else:
      errors += _teacher_room_errors(ctx, prompts, fitting)
  if _evaluates(config, names):
    unfit = unfit_eval_prompt_error(ctx.prompts(config.eval.problems).ids, positions, config)
    errors += [unfit] if unfit else []
  return errors


def _teacher_room_errors(ctx: RunContext, prompts, fitting: list[int]) -> list[str]:
  """Methods whose teacher prompt cannot hold even an empty context after any of the shortest training prompts
  (`self_distill.max_teacher_prompt_len`): every rollout would fall back to no teacher, and nothing would train."""
  section = ctx.config.self_distill
  templates = templates_from(section)
  shortest = sorted(fitting, key=lambda i: len(prompts.ids[i]))[:4]  # The context's text costs about the same.
  errors = []
  for name in method_names(section):
    kind = method_settings(section, name).context
    empty = [ContextChoice(demonstration="")] if "demonstration" in kind else []
    empty += [ContextChoice(feedback=feedback_context("", templates))] if "feedback" in kind else []
    least = min(
      len(chat_prompt_ids(ctx.tokenizer, teacher_messages(ctx.messages(prompts.problems[i]), choice, templates)))
      for i in shortest
      for choice in empty
    )
    if least > section.max_teacher_prompt_len:
      errors.append(
        f"field 'self_distill.max_teacher_prompt_len' = {section.max_teacher_prompt_len} cannot hold a teacher "
        f"prompt of method {name!r} with any context (the shortest, with an empty one, has {least} tokens): every "
        "rollout would have no teacher, and nothing would train"
      )
  return errors


def _rollout_width_errors(config: ml_collections.ConfigDict, positions: int) -> list[str]:
  """An on-policy step's student and teacher rows are their prompt width plus the rollout's new tokens, uncapped:
  a student prompt past the positions left fails its rollouts, and a teacher would be scored at positions the
  model does not have (the teacher diagnostic caps its prompts, so it would measure another teacher)."""
  section = config.self_distill
  new_tokens = section.rollout.max_new_tokens
  if new_tokens >= positions:  # Refused already: no prompt fits at all.
    return []
  return [
    f"fields 'self_distill.{field}' = {section[field]} and 'self_distill.rollout.max_new_tokens' = {new_tokens} "
    f"make {rows} rows of {section[field] + new_tokens} tokens, past the model's {positions} positions: lower one "
    "of them"
    for field, rows in (("max_prompt_len", "student"), ("max_teacher_prompt_len", "teacher"))
    if section[field] + new_tokens > positions
  ]


def _vocab_errors(ctx: RunContext) -> list[str]:
  """The pretrain stage trains the model on the task tokenizer it builds with `pretrain.tokenizer_vocab_size`."""
  config, vocab = ctx.config, ctx.model_cfg.vocab_size
  tokens = config.pretrain.tokenizer_vocab_size
  if vocab == tokens:
    return []
  override = config.model.overrides.vocab_size
  model = (
    f"field 'model.overrides.vocab_size' = {override}"
    if override
    else f"model preset {config.model.preset!r} has vocab_size {vocab} (field 'model.overrides.vocab_size' = 0)"
  )
  return [
    f"{model}, but the pretrain stage trains it on a task tokenizer of field 'pretrain.tokenizer_vocab_size' = "
    f"{tokens} tokens: make them equal"
  ]


def _plan_batch_errors(ctx: RunContext) -> list[str]:
  """Batches the plan stage compiles split over its slice's mesh: the SFT step's and the largest generation batch."""
  config = ctx.config
  chips = config_lib.topology_chips(config.mesh.topology)
  if not chips:  # The plan stage refuses the topology before it compiles anything.
    return []
  try:
    mesh = config_lib.mesh_shape(config, chips)
  except config_lib.ConfigError:  # Likewise a mesh its slice cannot hold.
    return []
  batch = plan_programs.generation_shape(config, ctx.model_cfg.max_position_embeddings).batch
  held = " or ".join(
    f"'{section}.batch_size'"
    for section in ("sampling", "eval_sampling", "self_distill.rollout")
    if get(config, section).batch_size == batch
  )
  batches = {
    "field 'sft.global_batch_size' (the plan's SFT step)": config.sft.global_batch_size,
    f"field {held} (the plan's generation batch)": batch,
  }
  return config_lib.indivisible_batch_errors(batches, mesh)
