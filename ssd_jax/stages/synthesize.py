"""The `synthesize` stage: N samples per prompt from the frozen base model, written as sample records.

Decoding uses `config.sampling` (the paper's T_train with top-k / top-p); records go to `synthesize/records`
and their counts (degeneracy filter, finish reasons, lengths) to `synthesize/summary.json`. A killed run,
rerun, ends with exactly the records of an uninterrupted one (`pipeline.synthesis`).
"""

from __future__ import annotations

import dataclasses
import json
import os

from ssd_jax.pipeline import model_io
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.sampling_setup import sampling_params, synthesis_prompts_that_fit
from ssd_jax.pipeline.synthesis import SynthesisJob, summarize_records, synthesize_records


def run(ctx: RunContext) -> None:
  """Samples the configured prompts from the base model into `synthesize/records` (+ `summary.json`)."""
  config, layout, section = ctx.config, ctx.layout, ctx.config.sampling
  source = ctx.base_model_dir
  prompts = ctx.prompts(config.synthesize.problems)
  # Before the model loads: a run where no prompt fits stops in seconds.
  kept = prompts.select(synthesis_prompts_that_fit(prompts.ids, ctx.model_cfg.max_position_embeddings, config))
  graphdef, state = ctx.load_model(source)
  cfg = model_io.model_config_of(graphdef, state)
  job = SynthesisJob(
    task_ids=kept.task_ids,
    messages=kept.messages,
    prompt_ids=kept.ids,
    params=sampling_params(section),
    n=section.n,
    max_new_tokens=section.max_new_tokens,
    stop_ids=ctx.tokenizer.stop_ids,
    seed=config.seed,
    source_checkpoint=os.path.abspath(source),
    prompts_per_chunk=config.synthesize.prompts_per_chunk,
  )
  sampler = ctx.sampler(graphdef, cfg, job.prompt_ids, section)
  too_long = len(prompts) - len(kept)
  print(
    f"[synthesize] {len(kept)} prompts x {section.n} samples at T={section.temperature}, "
    f"top_k={section.top_k}, top_p={section.top_p} from {source}"
    + (f"; {too_long} prompts too long for max_new_tokens {section.max_new_tokens} are skipped" if too_long else "")
  )
  counts = synthesize_records(
    sampler, state, job, ctx.tokenizer, layout.records, records_per_shard=config.synthesize.records_per_shard
  )
  ctx.sync("synthesize records")
  if ctx.is_coordinator:
    summary = {
      **summarize_records(layout.records),
      "prompts_too_long": too_long,
      "this_run": counts,
      "decoding": dataclasses.asdict(job.params),
      "n": job.n,
      "max_new_tokens": job.max_new_tokens,
      "seed": job.seed,
      "source_checkpoint": job.source_checkpoint,
    }
    with open(layout.synthesis_summary, "w") as f:
      json.dump(summary, f, indent=2)
    print(
      f"[synthesize] {summary['records']} records; degeneracy filter: {summary['degeneracy_filter']}; "
      f"finish: {summary['finish_reasons']}; cut at max_new_tokens (no end token): "
      f"{summary['cut_at_max_new_tokens']['count']} ({100 * summary['cut_at_max_new_tokens']['share']:.1f}%)"
    )
