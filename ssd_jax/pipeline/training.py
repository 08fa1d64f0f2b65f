"""Config sections -> the shared trainer: optimizer, loop settings, and SFT on a batch iterator.

Pretraining and SFT train with cross-entropy through `train.loop.train_loop`; checkpoints (state + data
iterator position) go to the stage's checkpoint directory and metrics to its log directory (JSONL +
TensorBoard). A rerun resumes from the newest checkpoint and sees the same batches in the same order, so a
killed run ends with the parameters of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from flax import nnx

from ssd_jax.config.self_distill import rollouts_per_update
from ssd_jax.onpolicy.rollouts import RolloutSetup
from ssd_jax.pipeline.context import RunContext
from ssd_jax.train.loop import IteratorSource, LoopConfig, train_loop
from ssd_jax.train.metrics import MetricsWriter
from ssd_jax.train.optimizer import Optimizer, OptimizerConfig, make_optimizer
from ssd_jax.train.sft_step import make_sft_step
from ssd_jax.train.throughput import (
  ProfileHook,
  ProfileWindow,
  SpeedHook,
  Throughput,
  forward_flops_per_token,
  parse_profile_steps,
  peak_flops,
  train_flops_per_token,
)
from ssd_jax.train.train_state import init_train_state


def optimizer_config(section: ml_collections.ConfigDict) -> OptimizerConfig:
  """AdamW with linear warm-up and cosine decay, as a training section (`pretrain`, `sft`, `self_distill`) says."""
  return OptimizerConfig(
    learning_rate=section.learning_rate,
    end_learning_rate=section.end_learning_rate,
    warmup_steps=section.warmup_steps,
    total_steps=section.steps,
    b1=section.b1,
    b2=section.b2,
    weight_decay=section.weight_decay,
    grad_clip_norm=section.grad_clip_norm or None,
    grad_accum_steps=section.grad_accum_steps,
  )


def make_optimizer_from(section: ml_collections.ConfigDict) -> Optimizer:
  """The optimizer (transformation, schedule, accumulation) of a training section."""
  return make_optimizer(optimizer_config(section))


def loop_config(section: ml_collections.ConfigDict, checkpoint_dir: str) -> LoopConfig:
  return LoopConfig(
    total_steps=section.steps,
    checkpoint_dir=checkpoint_dir,
    checkpoint_every=section.checkpoint_every,
    max_to_keep=section.max_to_keep,
    log_every=section.log_every,
    async_checkpointing=section.async_checkpointing,
    progress_bar=section.progress_bar,
  )


def speed_and_profile_hooks(
  ctx: RunContext,
  section: ml_collections.ConfigDict,
  profile_dir: str,
  *,
  tokens_per_step: int,
  flops_per_token: float,
) -> tuple:
  """Tokens/s, step time and MFU at every log point of `section`; a profiler trace of `section.profile_steps`.

  Args:
    ctx: the run.
    section: a training section (steps, log_every, profile_steps).
    profile_dir: where the trace goes.
    tokens_per_step: tokens one step computes on, padding included.
    flops_per_token: model FLOPs per such token.
  """
  speed = SpeedHook(
    Throughput(flops_per_token, peak_flops()),
    tokens_per_step=tokens_per_step,
    log_every=section.log_every,
    total_steps=section.steps,
  )
  return speed, ProfileHook(ProfileWindow(parse_profile_steps(section.profile_steps), profile_dir))


def onpolicy_speed_hooks(ctx: RunContext, setup: RolloutSetup, profile_dir: str) -> tuple:
  """`speed_and_profile_hooks` of a self_distill step: student forward and backward on the prompt and response,
  teacher forward on its context and the response. Step time includes the step's rollouts and grading (on the
  first update of each rollout batch)."""
  section, cfg = ctx.config.self_distill, ctx.model_cfg
  _, _, rows = rollouts_per_update(section)  # One update's (mini-)batch.
  student_len = setup.prompt_width + setup.max_new_tokens
  teacher_len = setup.teacher_prompt_width + setup.max_new_tokens
  flops = student_len * train_flops_per_token(cfg, student_len) + teacher_len * forward_flops_per_token(
    cfg, teacher_len
  )
  return speed_and_profile_hooks(
    ctx, section, profile_dir, tokens_per_step=rows * student_len, flops_per_token=flops / student_len
  )


def train_cross_entropy(
  ctx: RunContext,
  graphdef: nnx.GraphDef,
  params: Any,
  make_iterator: Callable[[], Any],
  section: ml_collections.ConfigDict,
  *,
  stage: str,
  metadata: Mapping[str, Any],
) -> Any:
  """Trains `params` with masked cross-entropy on the batches of `make_iterator()`.

  Args:
    ctx: the run; `params` must be sharded on its mesh.
    graphdef, params: the split model.
    make_iterator: builds the data iterator at the start of the data (with get_state/set_state).
    section: a training config section (steps, learning rates, batch, checkpointing, logging).
    stage: names the checkpoint and log directories.
    metadata: JSON-serialisable facts stored with every checkpoint.

  Returns:
    The trained parameters (same structure and shardings as `params`).
  """
  optimizer = make_optimizer_from(section)
  step = make_sft_step(graphdef, optimizer, chunk_size=section.loss_chunk_size, mesh=ctx.mesh, rules=ctx.rules)
  state = init_train_state(params, optimizer)
  with MetricsWriter(ctx.layout.logs(stage), tensorboard=section.tensorboard) as writer:
    final = train_loop(
      step,
      state,
      IteratorSource(make_iterator, step.place_batch),
      loop_config(section, ctx.layout.checkpoints(stage)),
      hooks=speed_and_profile_hooks(
        ctx,
        section,
        ctx.layout.profile(stage),
        tokens_per_step=section.global_batch_size * section.seq_len,
        flops_per_token=train_flops_per_token(ctx.model_cfg, section.seq_len),
      ),
      metrics_writer=writer,
      metadata=metadata,
    )
  return final.params
