"""The run's teacher diagnostic: `onpolicy.teacher_diagnostic` wired to the run's sampler, sandbox and files.

Written once per workdir to `self_distill/teacher_diagnostic.json` (a rerun prints the recorded one).
"""

from __future__ import annotations

import json
import os
from typing import Any

from flax import nnx

from ssd_jax import process_group
from ssd_jax.atomic_write import atomic_open
from ssd_jax.data.prompt_set import PromptSet, chat_prompt_ids
from ssd_jax.evals import Sandbox, evaluate
from ssd_jax.model.config import ModelConfig
from ssd_jax.onpolicy.rollouts import reference_demonstration
from ssd_jax.onpolicy.teacher_context import TeacherTemplates
from ssd_jax.onpolicy.teacher_diagnostic import DiagnosticInputs, format_diagnostic, teacher_diagnostic
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.sampling_setup import sampling_params
from ssd_jax.sampling.completions import graded_completion_text


def diagnose_teacher(
  ctx: RunContext,
  graphdef: nnx.GraphDef,
  params: Any,
  cfg: ModelConfig,
  prompts: PromptSet,
  sandbox: Sandbox,
  templates: TeacherTemplates,
) -> dict:
  """Measures (or reads back) the diagnostic of `params` on the first problems of `prompts`, and prints it."""
  section = ctx.config.self_distill
  path = ctx.layout.teacher_diagnostic

  def recorded() -> dict | None:
    if not os.path.isfile(path):
      return None
    with open(path) as f:
      return json.load(f)

  # Read by process 0 for every host: one that saw no file would sample (collectives) while the others went on.
  result = process_group.on_coordinator(ctx.process_group, recorded)
  if result is not None:
    print(f"[self_distill] {format_diagnostic(result)}")
    return result
  if len(prompts) < section.diagnostic_problems:
    print(
      f"[self_distill] teacher diagnostic on all {len(prompts)} training problems: fewer than field "
      f"'self_distill.diagnostic_problems' = {section.diagnostic_problems}"
    )
  subset = prompts.select(range(min(section.diagnostic_problems, len(prompts))))

  def sample_texts(prompt_ids: list[list[int]]) -> list[list[str]]:
    generations = ctx.sampler(graphdef, cfg, prompt_ids, section.rollout).generate(
      params,
      prompt_ids,
      sampling_params(section.rollout),
      n=section.diagnostic_samples,
      max_new_tokens=section.rollout.max_new_tokens,
      stop_ids=ctx.tokenizer.stop_ids,
      seed=ctx.seed,
      progress=False,
    )
    texts = [[] for _ in prompt_ids]
    for g in generations:
      texts[g.prompt_index].append(graded_completion_text(ctx.tokenizer, g))
    return texts

  def judge(problems, completions):
    # The feedback as training shows it: whole failures within the teacher's budget.
    result = evaluate(problems, completions, sandbox=sandbox, feedback_chars=templates.max_feedback_chars)
    return {task: [(s.passed, s.feedback) for s in r.samples] for task, r in result.by_task_id().items()}

  result = teacher_diagnostic(
    DiagnosticInputs(
      problems=subset.problems,
      messages=subset.messages,
      render=lambda messages: chat_prompt_ids(ctx.tokenizer, messages),
      sample_texts=sample_texts,
      judge=judge,
      templates=templates,
      reference_demonstration=reference_demonstration,
      # What the rollout sampler can hold, and no wider than the learner's teacher prompts.
      max_prompt_len=min(section.max_teacher_prompt_len, cfg.max_position_embeddings - section.rollout.max_new_tokens),
    )
  )
  if ctx.is_coordinator:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_open(path) as f:
      json.dump(result, f, indent=2)
  print(f"[self_distill] {format_diagnostic(result)}")
  return result
