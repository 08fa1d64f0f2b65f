"""The `eval` stage: every model over the decoding grid on the dev split, its best candidate on the test split.

The evaluation problems are split once into dev and test by problem id (`eval.split`, recorded in
`eval/split.json`). For each model in `eval.models` and each of its candidates, a checkpoint (the final
model, plus the intermediate training steps of `eval.checkpoints`, exported under `models/steps/`) at a
decoding setting of `eval.grid`: sample `eval_sampling.n` completions of every dev problem (every model with
the same seed, so draws are paired), run them against the tests, run the correct ones on probe inputs, and
write `completions.jsonl`, `results.json`, `report.md` and plots to `eval/<model>/<checkpoint>/<setting>/dev/`.
The candidate with the best dev pass@`eval.select_k` (`evals.protocol.select_best`), and with
`eval.tune_pass_at_n` the one with the best dev pass@n, are recorded in `eval/<model>/selection.json` and
sampled on the test problems (`.../test/`), which nothing else looks at.
Runs that finished (each writes a `done` file after its others) are skipped and saved completions are scored
without sampling again, so a killed stage resumes where it stopped. The workdir must be shared by all processes
(each grades its share of the saved completions).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

from ssd_jax import config as config_lib
from ssd_jax import process_group
from ssd_jax.config.schema import comma_list
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.evals import grid_runs, score_completions, write_report
from ssd_jax.evals.completions import load_completions, write_completions
from ssd_jax.evals.probes import generated_probe_inputs
from ssd_jax.evals.protocol import DecodingSetting, counts_by_task, select_best
from ssd_jax.evals.splits import SPLIT_FILE, Split, record_split
from ssd_jax.pipeline import model_io
from ssd_jax.pipeline.checkpoint_export import export_step, saved_steps
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.sampling_setup import sampling_params, unfit_eval_prompt_error
from ssd_jax.sampling.completions import graded_completion_text
from ssd_jax.tasks import solutions_for

COMPLETIONS_FILE = "completions.jsonl"
# Written after every other file of a candidate: without it, a rerun scores the candidate again.
DONE_FILE = "done"


def sample_completions(ctx: RunContext, model, prompts: PromptSet, setting: DecodingSetting) -> list[list[str]]:
  """`eval_sampling.n` decoded completions of each prompt at `setting`, from a loaded (graphdef, params)."""
  graphdef, state = model
  section = ctx.config.eval_sampling.copy_and_resolve_references()
  section.temperature, section.top_k, section.top_p = setting.temperature, setting.top_k, setting.top_p
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
    completions[generation.prompt_index].append(graded_completion_text(ctx.tokenizer, generation))
  return completions


def checkpoints_of(ctx: RunContext, name: str) -> list[tuple[str, int | None]]:
  """(label, training step or None for the final model) of each checkpoint of `name` to evaluate, final first.

  `eval.checkpoints` is '' (the final model only), 'all' (every saved step) or a list of steps; the last
  saved step is the final model itself and is not evaluated twice. The base model has no training steps.
  """
  spec = ctx.config.eval.checkpoints.strip()
  # Read on process 0 only: hosts that list the directory differently would evaluate different checkpoints.
  steps = process_group.on_coordinator(ctx.process_group, lambda: saved_steps(ctx.layout.training_checkpoints(name)))
  if not spec or not steps:
    return [(grid_runs.checkpoint_label(None), None)]
  wanted = steps[:-1] if spec == "all" else [int(s) for s in comma_list(spec)]
  missing = [s for s in wanted if s not in steps]
  if missing:
    raise FileNotFoundError(f"eval.checkpoints: model {name!r} saved no checkpoint at steps {missing}; it has {steps}")
  later_first = sorted((s for s in wanted if s != steps[-1]), reverse=True)
  return [(grid_runs.checkpoint_label(None), None), *((grid_runs.checkpoint_label(s), s) for s in later_first)]


def _score(ctx: RunContext, prompts: PromptSet, completions_path: str, out: pathlib.Path, title: str, meta: dict):
  config = ctx.config
  builtin = config.eval.problems.source == "builtin"
  # Every host reads the completions process 0 wrote; one that cannot must stop the others before grading.
  completions = process_group.everywhere(ctx.process_group, lambda: load_completions(completions_path))
  result, summary = score_completions(
    prompts.problems,
    completions,
    ks=config_lib.eval_ks(config),
    limits=ctx.sandbox_limits,
    workers=ctx.sandbox_workers,
    allow_weak_sandbox=ctx.sandbox_allow_weak,
    num_resamples=config.eval.bootstrap,
    seed=ctx.seed,
    known_solutions=solutions_for if builtin else None,
    probe_inputs=generated_probe_inputs if config.eval.probe else None,
    diversity_m=config.eval.diversity_m,
    group=ctx.process_group,
  )
  if ctx.is_coordinator:
    write_report(summary | meta, out, title, result)
    (out / DONE_FILE).touch()
  return summary


def evaluate_candidate(
  ctx: RunContext, load_model, prompts: PromptSet, name: str, checkpoint: str, setting: DecodingSetting, part: str
) -> None:
  """Samples and scores one candidate on one part of the split (skipped once it has finished)."""
  out = grid_runs.run_dir(ctx.layout.eval_root, name, checkpoint, setting, part)
  completions_path = str(out / COMPLETIONS_FILE)
  # Process 0 writes these files and reads them for all: a host that saw them differently would sample (device
  # collectives) while the others grade, and every host would hang.
  done, sampled = process_group.on_coordinator(
    ctx.process_group, lambda: [(out / DONE_FILE).is_file(), os.path.isfile(completions_path)]
  )
  if done:
    return
  if not sampled:
    completions = sample_completions(ctx, load_model(), prompts, setting)
    if ctx.is_coordinator:
      out.mkdir(parents=True, exist_ok=True)
      write_completions(completions_path, prompts.task_ids, completions)
    ctx.sync(f"eval {out} completions")
  # Every process grades its share of the samples; the coordinator writes the report.
  meta = grid_runs.run_metadata(checkpoint, setting, part)
  summary = _score(ctx, prompts, completions_path, out, f"{name} {checkpoint} {setting.label} {part}", meta)
  cells = ", ".join(f"pass@{k} {100 * v['mean']:.1f}" for k, v in summary["pass_at_k"].items())
  if ctx.is_coordinator:
    print(f"[eval] {name} {checkpoint} {setting.label} {part} ({summary['num_problems']} problems): {cells}")
  ctx.sync(f"eval {out} report")


def _part(prompts: PromptSet, split: Split, part: str) -> PromptSet:
  index = {task_id: i for i, task_id in enumerate(prompts.task_ids)}
  return prompts.select([index[task_id] for task_id in split.ids(part)])


def chosen_candidates(
  ctx: RunContext, name: str, checkpoints: Sequence[str], settings: Sequence[DecodingSetting], dev_ids: Sequence[str]
) -> list[tuple[str, DecodingSetting, str]]:
  """The candidates of model `name` chosen on dev, each as (checkpoint, setting, how it was chosen).

  The best by dev pass@`eval.select_k`, then with `eval.tune_pass_at_n` the best by dev pass@n. Process 0
  reads the dev results, records the choice in the model's selection.json and tells the others: hosts that
  read the results differently would sample different candidates on test.
  """
  config = ctx.config

  def choose() -> list[list]:
    candidates = grid_runs.load_candidates(ctx.layout.eval_root, name, checkpoints, settings)
    counts = {c.key: counts_by_task(c.per_problem) for c in candidates}
    selections = [select_best(counts, dev_ids, config.eval.select_k)]
    if config_lib.tunes_pass_at_n(config):
      selections.append(select_best(counts, dev_ids, config.eval_sampling.n))
    grid_runs.write_selection(ctx.layout.eval_root, name, *selections)
    by_key = {c.key: c for c in candidates}
    return [
      [
        by_key[s.best].checkpoint,
        dataclasses.asdict(by_key[s.best].setting),
        f"by dev pass@{s.metric_k} ({100 * s.scores[s.best][0]:.1f})",
      ]
      for s in selections
    ]

  return [
    (checkpoint, DecodingSetting(**setting), how)
    for checkpoint, setting, how in process_group.on_coordinator(ctx.process_group, choose)
  ]


def _loader(ctx: RunContext, name: str, step: int | None):
  """Loads the model once, on first use (a fully resumed candidate never loads it)."""
  cache = []

  def load():
    if not cache:
      path = ctx.model_dir(name) if step is None else export_step(ctx, name, step)
      cache.append(ctx.load_model(path))
    return cache[0]

  return load


def run(ctx: RunContext) -> None:
  """Evaluates each model of `eval.models` over the grid on dev, then its chosen candidate on test."""
  config = ctx.config
  prompts = ctx.prompts(config.eval.problems)
  unfit = unfit_eval_prompt_error(prompts.ids, ctx.model_cfg.max_position_embeddings, config)
  if unfit:  # Found before any model loads, not at the first sampling.
    raise config_lib.ConfigError(unfit)
  # Written by process 0 alone (hosts renaming one file at once failed), then read by all.
  split_path = os.path.join(ctx.layout.eval_root, SPLIT_FILE)
  split = Split.from_json(
    process_group.on_coordinator(ctx.process_group, lambda: record_split(split_path, ctx.eval_split(prompts)).to_json())
  )
  parts = {part: _part(prompts, split, part) for part in ("dev", "test")}
  settings = config_lib.decoding_grid(config).settings()
  print(f"[eval] {len(split.dev)} dev / {len(split.test)} test problems; grid: {[s.label for s in settings]}")
  for name in config_lib.eval_model_names(config):
    checkpoints = checkpoints_of(ctx, name)
    loaders = {label: _loader(ctx, name, step) for label, step in checkpoints}
    for label, _ in checkpoints:
      for setting in settings:
        evaluate_candidate(ctx, loaders[label], parts["dev"], name, label, setting, "dev")
    for checkpoint, setting, how in chosen_candidates(
      ctx, name, [label for label, _ in checkpoints], settings, split.dev
    ):
      print(f"[eval] {name}: chose {checkpoint}/{setting.label} {how}")
      evaluate_candidate(ctx, loaders[checkpoint], parts["test"], name, checkpoint, setting, "test")
