"""The `sft` stage: plain cross-entropy on the base model's own samples, exported as `models/ssd`.

Sample records -> the Grain SFT pipeline (degenerate samples dropped, shuffled, packed, checkpointable) -> the
shared trainer with the paper's AdamW / cosine settings from `config.sft` -> a Hugging Face directory with the
base model's tokenizer files.
"""

from __future__ import annotations

import os

import jax
import ml_collections
from absl import logging

from ssd_jax import process_group
from ssd_jax.data.sft_pipeline import SftPipelineConfig, sft_dataset
from ssd_jax.pipeline import model_io
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.training import train_cross_entropy


def pipeline_config(config: ml_collections.ConfigDict) -> SftPipelineConfig:
  return SftPipelineConfig(
    seq_len=config.sft.seq_len,
    global_batch_size=config.sft.global_batch_size,
    seed=config.seed,
    drop_degenerate=config.sft.drop_degenerate,
    pack=config.sft.pack,
  )


def run(ctx: RunContext) -> None:
  """Fine-tunes the base model on `synthesize/records` and writes `models/ssd`."""
  config, layout, section = ctx.config, ctx.layout, ctx.config.sft
  source = ctx.base_model_dir
  # Before the model is loaded, so that records with nothing to train on fail before any model work.
  # Every host checks its own shard; one with nothing to train on stops them all here.
  dataset, counts = process_group.everywhere(
    ctx.process_group,
    lambda: sft_dataset(
      layout.records,
      ctx.tokenizer,
      pipeline_config(config),
      shard_index=jax.process_index(),
      shard_count=jax.process_count(),
    ),
  )
  shard = f" (process {jax.process_index()}'s share)" if jax.process_count() > 1 else ""
  print(f"[sft] examples{shard}: {counts}")
  graphdef, params = ctx.load_model(source)
  cfg = model_io.model_config_of(graphdef, params)
  print(f"[sft] {section.steps} steps of {section.global_batch_size} x {section.seq_len} tokens from {source}")
  params = train_cross_entropy(
    ctx,
    graphdef,
    params,
    lambda: iter(dataset),
    section,
    stage="sft",
    metadata={"stage": "sft", "base_model": os.path.abspath(source), "records": os.path.abspath(layout.records)},
  )
  logging.info("sft: SSD model written to %s", ctx.export_model(params, cfg, "ssd"))
