"""The `sft` stage: plain cross-entropy on the base model's own samples, exported as `models/ssd`.

Sample records -> the Grain SFT pipeline (degenerate samples dropped, shuffled, packed, checkpointable)
-> the resumable training loop with the paper's AdamW / cosine settings from `config.sft` -> a Hugging
Face directory with the base model's tokenizer files.
"""

from __future__ import annotations

import os

import jax
import ml_collections
from absl import logging

from ssd_jax.data.sft_pipeline import SftPipelineConfig, sft_dataset
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.methods import model_io, training
from ssd_jax.methods.runtime import Runtime
from ssd_jax.methods.ssd import Layout, base_model_dir, tokenizer_dir
from ssd_jax.methods.training import make_optimizer_from

__all__ = ["make_optimizer_from", "pipeline_config", "run_sft_stage"]


def pipeline_config(config: ml_collections.ConfigDict) -> SftPipelineConfig:
  return SftPipelineConfig(
    seq_len=config.sft.seq_len,
    global_batch_size=config.sft.global_batch_size,
    seed=config.seed,
    drop_degenerate=config.sft.drop_degenerate,
  )


def run_sft_stage(config: ml_collections.ConfigDict, workdir: str, run: Runtime) -> None:
  """Fine-tunes the base model on `synthesize/records` and writes `models/ssd`."""
  layout = Layout(workdir)
  source = base_model_dir(config, layout)
  tokenizer_path = tokenizer_dir(config, layout)
  tokenizer = load_tokenizer(tokenizer_path)
  dataset = sft_dataset(
    layout.records, tokenizer, pipeline_config(config), shard_index=jax.process_index(), shard_count=jax.process_count()
  )
  graphdef, params = model_io.load_split(run, source)
  cfg = model_io.model_config_of(graphdef, params)
  section = config.sft
  print(f"[sft] {section.steps} steps of {section.global_batch_size} x {section.seq_len} tokens from {source}")
  params = training.train(
    run,
    graphdef,
    params,
    lambda: iter(dataset),
    section,
    checkpoint_dir=layout.checkpoints("sft"),
    log_dir=layout.logs("sft"),
    metadata={"stage": "sft", "base_model": os.path.abspath(source), "records": os.path.abspath(layout.records)},
  )
  model_io.export_hf(params, cfg, layout.model("ssd"), tokenizer_path)
  logging.info("sft: SSD model written to %s", layout.model("ssd"))
