"""What each stage depends on and writes: the config fields, the stages whose outputs it reads, workdir files.

`run_state` fingerprints a stage from these; the runner walks them to find what a run reads and what
`--restart` sets aside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

from ssd_jax.config import EVAL_MODELS, STAGES, eval_model_names, evaluated_training_stages, in_stage_order
from ssd_jax.config.self_distill import BLANK_FEEDBACK_ABLATIONS, METHODS, method_names
from ssd_jax.pipeline.layout import RunLayout

# The model fields of stages that read a base model (`model.hf_dir`, else the pretrain stage's output, which
# is an input): which checkpoint, and the precision it computes and trains in. remat and attention change how
# the same function is computed, so they may change between runs.
BASE_MODEL_FIELDS = ("model.hf_dir", "model.dtype", "model.param_dtype")
# scan_layers also shapes the parameter tree a training stage checkpoints: another value cannot resume it, nor
# export its intermediate checkpoints. The router loss's weight changes what training computes.
TRAINING_MODEL_FIELDS = (*BASE_MODEL_FIELDS, "model.scan_layers", "model.router_aux_loss_coef")
# Config fields (dotted paths; a section means all of it) each stage's outputs depend on.
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
  "forward": ("seed", "model", "forward"),
  "pretrain": ("seed", "model", "prompting", "pretrain", "self_distill.templates", "eval.timeout_s", "eval.memory_mb"),
  "synthesize": ("seed", *BASE_MODEL_FIELDS, "tokenizer", "prompting", "sampling", "synthesize"),
  "sft": ("seed", *TRAINING_MODEL_FIELDS, "tokenizer", "sft"),
  "self_distill": (
    "seed",
    *TRAINING_MODEL_FIELDS,
    "tokenizer",
    "prompting",
    "self_distill",
    "eval_sampling",
    "eval.problems",
    "eval.split",  # Its held-out curve scores the first dev problems.
    "eval.ks",
    "eval.timeout_s",
    "eval.memory_mb",
  ),
  "eval": ("seed", *BASE_MODEL_FIELDS, "tokenizer", "prompting", "eval_sampling", "eval"),
  "report": ("eval.models", "eval.ks"),
  # The generation program it judges is the largest of the sampling sections the listed stages use.
  "plan": (
    "stages",
    "model",
    "mesh",
    "sampling",
    "eval_sampling",
    "self_distill.rollout",
    "self_distill.max_prompt_len",
    "sft",
    "plan",
  ),
  "toy": ("seed", "model", "toy"),
}
# Fields of fingerprinted sections that change how a stage runs or reports, not what it writes, so a run may
# resume with other values (a killed eval with fewer grading workers); records that hold them ignore them.
RUNTIME_FIELDS = frozenset(
  {"eval.workers", "self_distill.log_every", "self_distill.profile_steps"}
  | {
    f"{stage}.{field}"
    for stage in ("pretrain", "sft")
    for field in ("async_checkpointing", "progress_bar", "tensorboard", "log_every", "profile_steps")
  }
)
# Fields that name files or directories a stage reads: what they hold is part of its fingerprint too.
CONTENT_FIELDS = (
  "model.hf_dir",
  "tokenizer.path",
  "synthesize.problems.path",
  "self_distill.problems.path",
  "eval.problems.path",
)
# The stages whose outputs each stage reads (their fingerprints are part of its own).
STAGE_READS: dict[str, tuple[str, ...]] = {
  "synthesize": ("pretrain",),
  "sft": ("pretrain", "synthesize"),
  "self_distill": ("pretrain",),
  "eval": ("pretrain", "sft", "self_distill"),
  "report": ("eval",),
}


def stage_reads(name: str, config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages whose outputs stage `name` reads under `config`.

  The pretrain stage's base model is read only without `model.hf_dir`; eval reads only the stages that tune
  the models it evaluates.
  """
  reads = STAGE_READS.get(name, ())
  if config.model.hf_dir:
    reads = tuple(r for r in reads if r != "pretrain")
  if name == "eval":
    tuned = evaluated_training_stages(config)
    reads = tuple(r for r in reads if r == "pretrain" or r in tuned)
  return reads


def stage_outputs(name: str, config: ml_collections.ConfigDict, layout: RunLayout) -> list[str]:
  """What stage `name` writes under `config`, relative to the workdir (listed in its done marker)."""
  return layout.stage_outputs(name, eval_model_names(config), method_names(config.self_distill))


def workdir_reads(name: str, layout: RunLayout) -> list[str]:
  """Files of the workdir that stage `name` reads besides the outputs of `stage_reads`, relative to the workdir:
  what they hold is part of its fingerprint.

  The report shows the self_distill stage's teacher diagnostic whenever the file is there, also when eval does
  not evaluate an on-policy model (and so does not read that stage).
  """
  files = {"report": [layout.teacher_diagnostic]}.get(name, [])
  return [os.path.relpath(p, layout.workdir) for p in files]


def recorded_reads(record: Mapping[str, Any]) -> set[str]:
  """The stages a stage record read: its inputs, and the writers of the workdir files whose digests it holds."""
  written = {path.split("/")[0] for path in record.get("contents", {})} & set(STAGES)
  return set(record.get("inputs", {})) | written


def stages_read(names: Iterable[str], config: ml_collections.ConfigDict) -> list[str]:
  """The stages whose outputs stages `names` read under `config`, directly or through others, in pipeline order."""
  found, todo = set(), list(names)
  while todo:
    for upstream in stage_reads(todo.pop(), config):
      if upstream not in found:
        found.add(upstream)
        todo.append(upstream)
  return in_stage_order(found)


def restart_outputs(name: str, layout: RunLayout) -> list[str]:
  """Everything stage `name` may have written under any config, relative to the workdir (what `--restart`
  sets aside): a model or evaluation that an earlier config named must not outlive the restart."""
  return layout.stage_outputs(name, EVAL_MODELS, (*METHODS, *BLANK_FEEDBACK_ABLATIONS))
