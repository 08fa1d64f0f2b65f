"""Helpers for the SSD pipeline tests: a tiny config, a task tokenizer, a random base model on disk."""

from __future__ import annotations

import functools
import os
import pathlib

from flax import nnx

from ssd_jax import main
from ssd_jax.config import base_config, stage_names
from ssd_jax.model import Transformer, presets
from ssd_jax.pipeline import model_io, runner
from ssd_jax.pipeline.context import RunContext
from ssd_jax.tasks import build_task_tokenizer


@functools.cache
def task_tokenizer_dir(root: str) -> str:
  """The built-in task's tokenizer, built once per directory."""
  path = os.path.join(root, "tokenizer")
  if not os.path.isfile(os.path.join(path, "tokenizer.json")):
    build_task_tokenizer(path)
  return path


def tiny_model_config():
  return presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")


def write_random_base_model(out_dir: str | pathlib.Path, tokenizer_dir: str, seed: int = 0) -> str:
  """A randomly initialised tiny Qwen3-style model as a Hugging Face directory with tokenizer files."""
  cfg = tiny_model_config()
  _, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(seed)))
  model_io.export_hf(state, cfg, str(out_dir), tokenizer_dir)
  return str(out_dir)


def micro_config(stages: str):
  """The default pipeline shrunk to seconds: tiny model, few steps, few problems, short completions.

  Batch sizes are multiples of 8, the fake device count of the tests.
  """
  c = base_config()
  c.stages = stages
  c.model.preset = "tiny_qwen3"
  c.model.dtype = c.model.param_dtype = "float32"
  c.model.overrides.max_position_embeddings = 256
  c.prompting.system_prompt = ""
  for section in (c.pretrain, c.sft):
    section.update(
      dict(
        steps=3,
        warmup_steps=1,
        learning_rate=1e-3,
        end_learning_rate=1e-4,
        global_batch_size=8,
        seq_len=128,
        checkpoint_every=1,
        log_every=1,
        tensorboard=False,
        progress_bar=False,
        loss_chunk_size=256,
      )
    )
  c.pretrain.num_examples = 64
  c.sampling.update(dict(temperature=1.6, top_k=20, top_p=0.8, n=1, max_new_tokens=12, batch_size=8))
  c.synthesize.problems.num_problems = 8
  c.synthesize.prompts_per_chunk = 4
  c.synthesize.records_per_shard = 3
  c.eval_sampling.update(dict(temperature=1.1, top_k=20, top_p=0.8, n=2, max_new_tokens=12, batch_size=8))
  c.eval.problems.num_problems = 4
  c.eval.ks = "1,2"
  c.eval.bootstrap = 20
  c.eval.workers = 2
  c.eval.grid.temperatures = "0.7,1.1"
  c.eval.checkpoints = "all"
  c.self_distill.max_to_keep = 4  # Every save of its default schedule is a candidate.
  # Rows within the model's 256 positions (student prompts here are at most 64 tokens).
  c.self_distill.update(dict(max_prompt_len=128, max_teacher_prompt_len=244))
  c.self_distill.rollout.max_new_tokens = 12
  return c


def run_pipeline(config, workdir: str) -> RunContext:
  """Runs `config.stages` in `workdir` as `python -m ssd_jax.main` does; returns the run's context."""
  stages = main.stage_functions(stage_names(config))
  ctx = runner.prepare(config, str(workdir), stages)
  runner.run(ctx, stages)
  return ctx


def context(config, workdir: str) -> RunContext:
  """The RunContext of `config` in `workdir`, without running anything."""
  return RunContext.create(config, str(workdir))
