"""Simple self-distillation (SSD): the run layout its stages share, and the checks they need up front.

The recipe, one stage each (`python -m ssd_jax.main --config=configs/NAME.py` runs them in order):

  pretrain    (built-in task only) train a tiny base model from scratch -> models/base
  synthesize  sample from the frozen base at T_train with top-k/top-p -> synthesize/records (+ summary)
  sft         plain cross-entropy on the raw, unverified samples -> models/ssd
  self_distill  (optional) on-policy SDSD / SDPO from the same base -> models/sdsd, models/sdpo
  eval        n samples per problem at T_eval for each model of eval.models -> eval/<model>/ (JSON, Markdown, PNG)
  report      their pass@k curves and diversity side by side -> report/, and the pass@k table on stdout

Every stage reads what earlier ones wrote under the workdir, so each can be rerun on its own. Models are
exchanged as Hugging Face directories (config.json, model.safetensors, tokenizer files): the base model is
`model.hf_dir` when given, and eval and users load the SSD model the same way.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from ssd_jax import config as config_lib

# Stages that read the base model's weights.
_NEEDS_BASE_WEIGHTS = ("synthesize", "sft", "self_distill", "eval")
_TRAINING_SECTIONS = ("pretrain", "sft")


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each stage of a run writes, under `workdir`."""

  workdir: str

  def _path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  @property
  def task_tokenizer(self) -> str:
    return self._path("tokenizer")

  def checkpoints(self, stage: str) -> str:
    return self._path(stage, "checkpoints")

  def logs(self, stage: str) -> str:
    return self._path(stage, "logs")

  def model(self, name: str) -> str:
    """The Hugging Face directory of model `name` ('base', 'ssd', 'sdsd' or 'sdpo')."""
    return self._path("models", name)

  @property
  def records(self) -> str:
    return self._path("synthesize", "records")

  @property
  def synthesis_summary(self) -> str:
    return self._path("synthesize", "summary.json")

  def eval_dir(self, name: str) -> str:
    return self._path("eval", name)

  @property
  def report_dir(self) -> str:
    return self._path("report")


def stage_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return tuple(s.strip() for s in config.stages.split(",") if s.strip())


def base_model_dir(config: ml_collections.ConfigDict, layout: Layout) -> str:
  """The base model's directory: `model.hf_dir`, or the one the pretrain stage writes."""
  return config.model.hf_dir or layout.model("base")


def tokenizer_dir(config: ml_collections.ConfigDict, layout: Layout) -> str:
  """`tokenizer.path`, else the base model's directory (which holds its tokenizer files)."""
  return config.tokenizer.path or base_model_dir(config, layout)


def model_dir(config: ml_collections.ConfigDict, layout: Layout, name: str) -> str:
  """The directory of evaluated model `name`: the base model, or one a training stage wrote."""
  return base_model_dir(config, layout) if name == "base" else layout.model(name)


def eval_model_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return tuple(m.strip() for m in config.eval.models.split(",") if m.strip())


def eval_ks(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  return tuple(int(k) for k in config.eval.ks.split(",") if k.strip())


def check_config(config: ml_collections.ConfigDict) -> None:
  """Cross-field checks of the SSD stages, before any weight is read.

  Raises:
    ConfigError: naming the field, e.g. a stage that needs base weights without `model.hf_dir`.
  """
  names = stage_names(config)
  errors = []
  weight_stages = [n for n in names if n in _NEEDS_BASE_WEIGHTS]
  if weight_stages and "pretrain" not in names:
    hf_dir = config.model.hf_dir
    if not hf_dir:
      errors.append(
        f"field 'model.hf_dir' is empty, but stages {weight_stages} need the base model's weights: pass "
        "--config.model.hf_dir=/path/to/hf_checkpoint (a directory with config.json and *.safetensors)"
      )
    elif not os.path.isfile(os.path.join(hf_dir, "config.json")):
      errors.append(f"field 'model.hf_dir' = {hf_dir!r} holds no config.json (is the path right?)")
  if "pretrain" in names and config.model.hf_dir:
    errors.append(
      f"field 'model.hf_dir' = {config.model.hf_dir!r} is set, but the 'pretrain' stage trains "
      "the base model from scratch; drop one of them"
    )
  for section in _TRAINING_SECTIONS:
    train = config[section]
    if train.warmup_steps > train.steps:
      errors.append(f"field '{section}.warmup_steps' = {train.warmup_steps} exceeds '{section}.steps' = {train.steps}")
    if train.end_learning_rate > train.learning_rate:
      errors.append(
        f"field '{section}.end_learning_rate' = {train.end_learning_rate} exceeds "
        f"'{section}.learning_rate' = {train.learning_rate}"
      )
    if train.global_batch_size % train.grad_accum_steps:
      errors.append(
        f"field '{section}.global_batch_size' = {train.global_batch_size} is not divisible by "
        f"'{section}.grad_accum_steps' = {train.grad_accum_steps}"
      )
  for section in ("synthesize", "eval"):
    if section not in names:
      continue  # A plan-only run needs no prompts.
    problems = config[section].problems
    if problems.source == "builtin" and problems.num_problems < 1:
      errors.append(f"field '{section}.problems.num_problems' must be >= 1 for the built-in task")
    if problems.source in ("jsonl", "tfds") and not problems.path:
      errors.append(f"field '{section}.problems.path' is empty but source is {problems.source!r}")
  if errors:
    raise config_lib.ConfigError("invalid config:\n  " + "\n  ".join(errors))
