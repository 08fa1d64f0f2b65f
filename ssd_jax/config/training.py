"""Training sections (`pretrain`, `sft`): AdamW with warm-up and cosine decay, packed batches, checkpoints."""

from __future__ import annotations

import math

import ml_collections

from ssd_jax.config.schema import Check
from ssd_jax.train.throughput import parse_profile_steps

TRAINING_SECTIONS = ("pretrain", "sft")


# The schedule computes in float32: a larger rate is inf there, and the first update with it NaN.
_FLOAT32_MAX = 3.4028234663852886e38


def training_section(
  *,
  steps: int,
  warmup_steps: int,
  learning_rate: float,
  end_learning_rate: float,
  global_batch_size: int,
  seq_len: int,
  checkpoint_every: int,
) -> ml_collections.ConfigDict:
  t = ml_collections.ConfigDict()
  t.steps = steps
  t.warmup_steps = warmup_steps
  t.learning_rate = learning_rate  # Peak, after linear warm-up; cosine decay to end_learning_rate.
  t.end_learning_rate = end_learning_rate
  t.b1 = 0.9
  t.b2 = 0.95
  t.weight_decay = 0.1
  t.grad_clip_norm = 1.0  # 0 disables clipping.
  t.global_batch_size = global_batch_size  # Packed rows per optimizer step, over all hosts.
  t.seq_len = seq_len  # Tokens per packed row.
  t.grad_accum_steps = 1
  t.loss_chunk_size = 1024  # Tokens per chunk of the cross-entropy on one device: [chunk, V] f32 logits at a time.
  t.checkpoint_every = checkpoint_every
  t.max_to_keep = 3
  t.log_every = 10
  t.async_checkpointing = True
  t.tensorboard = True
  t.progress_bar = True
  t.profile_steps = ""  # "START,STOP": a jax.profiler trace of steps START+1..STOP in <stage>/profile.
  return t


def optimizer_checks(prefix: str) -> list[Check]:
  """The optimizer, schedule and checkpoint fields every training section has (pretrain, sft, self_distill)."""
  return [
    Check(f"{prefix}.steps", lambda v: v >= 1, "at least 1 step"),
    Check(f"{prefix}.warmup_steps", lambda v: v >= 0, "warm-up steps >= 0 (and <= steps)"),
    Check(f"{prefix}.learning_rate", lambda v: 0 < v <= _FLOAT32_MAX, "a finite learning rate > 0 (in float32)"),
    Check(
      f"{prefix}.end_learning_rate", lambda v: 0 <= v <= _FLOAT32_MAX, "a finite final learning rate >= 0 (in float32)"
    ),
    Check(f"{prefix}.b1", lambda v: 0 <= v < 1, "b1 in [0, 1)"),
    Check(f"{prefix}.b2", lambda v: 0 <= v < 1, "b2 in [0, 1)"),
    Check(f"{prefix}.weight_decay", lambda v: 0 <= v < math.inf, "a finite weight decay >= 0"),
    Check(f"{prefix}.grad_clip_norm", lambda v: 0 <= v < math.inf, "a finite clip norm >= 0 (0 means off)"),
    Check(f"{prefix}.grad_accum_steps", lambda v: v >= 1, "at least 1 micro-batch per step"),
    Check(f"{prefix}.checkpoint_every", lambda v: v >= 1, "a checkpoint interval >= 1"),
    Check(f"{prefix}.max_to_keep", lambda v: v >= 1, "at least 1 checkpoint kept"),
    Check(f"{prefix}.log_every", lambda v: v >= 1, "a logging interval >= 1"),
    profile_steps_check(prefix),
  ]


def training_checks(prefix: str) -> list[Check]:
  """The checks of a packed-batch training section (pretrain, sft)."""
  return [
    *optimizer_checks(prefix),
    Check(f"{prefix}.global_batch_size", lambda v: v >= 1, "a batch size >= 1"),
    Check(f"{prefix}.seq_len", lambda v: v >= 2, "a sequence length >= 2"),
    Check(f"{prefix}.loss_chunk_size", lambda v: v >= 1, "a chunk size >= 1"),
  ]


def profile_steps_check(prefix: str) -> Check:
  return Check(f"{prefix}.profile_steps", _valid_profile_steps, "'' or 'START,STOP' with 0 <= START < STOP")


def _valid_profile_steps(text: str) -> bool:
  try:
    parse_profile_steps(text)
  except ValueError:
    return False
  return True


def schedule_errors(section: ml_collections.ConfigDict, prefix: str) -> list[str]:
  """Fields of one optimizer section that contradict each other."""
  errors = []
  if section.warmup_steps > section.steps:
    errors.append(f"field '{prefix}.warmup_steps' = {section.warmup_steps} exceeds '{prefix}.steps' = {section.steps}")
  if section.end_learning_rate > section.learning_rate:
    errors.append(
      f"field '{prefix}.end_learning_rate' = {section.end_learning_rate} exceeds "
      f"'{prefix}.learning_rate' = {section.learning_rate}"
    )
  return errors


def profile_steps_errors(section: ml_collections.ConfigDict, prefix: str) -> list[str]:
  """A profiler window that ends after the section's last step."""
  window = parse_profile_steps(section.profile_steps) if _valid_profile_steps(section.profile_steps) else None
  if window and window[1] > section.steps:
    return [f"field '{prefix}.profile_steps' = {section.profile_steps!r} ends after '{prefix}.steps' = {section.steps}"]
  return []


def cross_errors(config: ml_collections.ConfigDict) -> list[str]:
  errors = []
  for prefix in TRAINING_SECTIONS:
    section = config[prefix]
    errors += schedule_errors(section, prefix) + profile_steps_errors(section, prefix)
    if section.global_batch_size % section.grad_accum_steps:
      errors.append(
        f"field '{prefix}.global_batch_size' = {section.global_batch_size} is not divisible by "
        f"'{prefix}.grad_accum_steps' = {section.grad_accum_steps}"
      )
  return errors
