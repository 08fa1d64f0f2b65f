"""Intermediate training checkpoints as Hugging Face directories, so the eval stage can sample them like any model."""

from __future__ import annotations

import os

from flax import nnx

from ssd_jax import process_group
from ssd_jax.onpolicy.learner import LearnerState
from ssd_jax.pipeline import model_io
from ssd_jax.pipeline.context import RunContext
from ssd_jax.train import checkpoint_items

# The student's parameters in the state each tuning stage checkpoints, read back without a target: SFT saves
# a TrainState, self_distill the on-policy learner's LearnerState (the student's TrainState and a teacher).
_STUDENT_PARAMS = {"sft": lambda saved: saved["params"], "self_distill": LearnerState.saved_student_params}


def saved_steps(checkpoint_dir: str | None) -> list[int]:
  """The steps with a finished checkpoint in `checkpoint_dir`, ascending (none when it does not exist)."""
  if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
    return []
  return sorted(
    int(entry)
    for entry in os.listdir(checkpoint_dir)
    if entry.isdigit() and os.path.isdir(os.path.join(checkpoint_dir, entry, checkpoint_items.STATE_ITEM))
  )


def _pure(tree):
  """A saved nnx state as a pure dict: each variable's `{"value": array}` node becomes the array."""
  if isinstance(tree, dict):
    if set(tree) == {"value"}:
      return tree["value"]
    return {key: _pure(value) for key, value in tree.items()}
  return tree


def export_step(ctx: RunContext, name: str, step: int) -> str:
  """Writes the parameters model `name` had at training step `step` as a Hugging Face directory.

  The final model gives the structure, shardings and config; the checkpointed state of the stage that
  tunes the model is read without a target (to host memory, every process) and the student's parameters
  in it replace the final model's. A directory exported before is reused: a restart of that stage sets the
  model's exports aside with its checkpoints (`RunLayout.stage_outputs`).

  Returns:
    The directory, `layout.model_at_step(name, step)`.

  Raises:
    FileNotFoundError: the model has no training checkpoint at `step`, naming the steps it has.
  """
  out = ctx.layout.model_at_step(name, step)
  checkpoint_dir = ctx.layout.training_checkpoints(name)
  # Process 0 looks for every host: one that saw the files differently would export (a collective) alone.
  exported, steps = process_group.on_coordinator(
    ctx.process_group, lambda: [os.path.isfile(os.path.join(out, "config.json")), saved_steps(checkpoint_dir)]
  )
  if exported:
    return out
  if step not in steps:
    raise FileNotFoundError(f"model {name!r} has no training checkpoint at step {step} in {checkpoint_dir}: {steps}")
  graphdef, params = ctx.load_model(ctx.model_dir(name))
  restored = checkpoint_items.read_state(ctx.process_group, checkpoint_dir, step)
  nnx.replace_by_pure_dict(params, _pure(_STUDENT_PARAMS[ctx.layout.tuning_stage(name)](restored)))
  model_io.export_hf(params, model_io.model_config_of(graphdef, params), out, ctx.tokenizer_dir)
  return out
