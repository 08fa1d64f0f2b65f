"""One training run from a config section (`pretrain`, `sft`): optimizer, jitted step, resumable loop.

Both stages that train use this: the optimizer and schedule come from the section's fields, checkpoints
(state + data iterator position) go to the stage's checkpoint directory and metrics to its log directory
(JSONL + TensorBoard). A rerun resumes from the newest checkpoint and sees the same batches in the same
order, so a killed run ends with the parameters of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from flax import nnx

from ssd_jax.methods.runtime import Runtime
from ssd_jax.train.metrics import MetricsWriter
from ssd_jax.train.optimizer import Optimizer, OptimizerConfig, make_optimizer
from ssd_jax.train.sft_loop import LoopConfig, run_sft
from ssd_jax.train.sft_step import make_sft_step
from ssd_jax.train.train_state import init_train_state


def optimizer_config(section: ml_collections.ConfigDict) -> OptimizerConfig:
  """AdamW with linear warm-up and cosine decay, as a training section specifies."""
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


def train(
  run: Runtime,
  graphdef: nnx.GraphDef,
  params: Any,
  make_iterator: Callable[[], Any],
  section: ml_collections.ConfigDict,
  *,
  checkpoint_dir: str,
  log_dir: str,
  metadata: Mapping[str, Any],
) -> Any:
  """Trains `params` with masked cross-entropy on the batches of `make_iterator()`.

  Args:
    run: the run's mesh and rules; `params` must be sharded on its mesh.
    graphdef, params: the split model.
    make_iterator: builds the data iterator at the start of the data (with get_state/set_state).
    section: a training config section (steps, learning rates, batch, checkpointing, logging).
    checkpoint_dir: where to checkpoint and resume from.
    log_dir: where `metrics.jsonl` and TensorBoard events go.
    metadata: JSON-serialisable facts stored with every checkpoint.

  Returns:
    The trained parameters (same structure and shardings as `params`).
  """
  optimizer = make_optimizer_from(section)
  step = make_sft_step(graphdef, optimizer, chunk_size=section.loss_chunk_size, mesh=run.mesh, rules=run.rules)
  state = init_train_state(params, optimizer)
  with MetricsWriter(log_dir, tensorboard=section.tensorboard) as writer:
    final = run_sft(
      step,
      state,
      make_iterator,
      loop_config(section, checkpoint_dir),
      metrics_writer=writer,
      place_batch=step.place_batch,
      metadata=metadata,
    )
  return final.params
