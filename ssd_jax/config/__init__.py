"""Config schema and validation.

Every config file starts from `base_config()` and overrides what it needs. `validate` runs before any
expensive work and reports every problem at once, each naming its field (`sft.learning_rate`), so a typo on
a pod costs seconds, not a queued-resource slot. Each section module owns its defaults and checks:

  run           seed, stages, model, mesh, tokenizer, forward, plan (and what the chosen stages need)
  sampling      sampling (T_train), eval_sampling (T_eval)
  ssd           prompting, pretrain, synthesize, sft, eval
  self_distill  on-policy self-distillation (SDSD / OPSD, SDPO)
  toy           the SSD paper's lock/fork toy (the `toy` stage)
"""

from __future__ import annotations

import ml_collections

from ssd_jax.config import run, sampling, self_distill, ssd, toy, training
from ssd_jax.config.run import (
  MODEL_STAGES,
  STAGES,
  decoding_sections,
  in_stage_order,
  indivisible_batch_errors,
  mesh_shape,
  planning_device_count,
  stage_names,
  topology_chips,
)
from ssd_jax.config.schema import Check, ConfigError, raise_if, schema_errors, value_errors
from ssd_jax.config.ssd import (
  EVAL_MODELS,
  PROBLEM_SOURCES,
  decoding_grid,
  eval_ks,
  eval_model_names,
  evaluated_training_stages,
  tunes_pass_at_n,
)

# In schema order; `training` adds no section of its own but checks those of `ssd`.
_SECTIONS = (run, sampling, ssd, training, self_distill, toy)

__all__ = [
  "EVAL_MODELS",
  "MODEL_STAGES",
  "PROBLEM_SOURCES",
  "STAGES",
  "Check",
  "ConfigError",
  "base_config",
  "check_run",
  "decoding_grid",
  "eval_ks",
  "eval_model_names",
  "evaluated_training_stages",
  "decoding_sections",
  "in_stage_order",
  "indivisible_batch_errors",
  "tunes_pass_at_n",
  "mesh_shape",
  "planning_device_count",
  "stage_names",
  "topology_chips",
  "validate",
]


def base_config() -> ml_collections.ConfigDict:
  """The full schema with defaults; every runnable config overrides fields of this one."""
  c = ml_collections.ConfigDict()
  for section in _SECTIONS:
    if hasattr(section, "add_sections"):
      section.add_sections(c)
  return c


def validate(
  config: ml_collections.ConfigDict,
  *,
  schema: ml_collections.ConfigDict | None = None,
  device_count: int | None = None,
) -> None:
  """Raises ConfigError listing every problem in `config`, each naming its field.

  Args:
    config: the config to check.
    schema: the reference schema; `base_config()` when None.
    device_count: when given, the mesh must multiply to it and split the configured stages' batches.
  """
  errors = schema_errors(config, base_config() if schema is None else schema)
  if not errors:
    for section in _SECTIONS:
      if hasattr(section, "checks"):
        errors += value_errors(config, section.checks())
  if not errors:
    for section in _SECTIONS:
      if hasattr(section, "cross_errors"):
        errors += section.cross_errors(config)
  if not errors and device_count is not None:
    try:
      errors += run.batch_errors(config, device_count)
    except ConfigError as e:
      errors.append(str(e))
  raise_if(errors)


def check_run(config: ml_collections.ConfigDict, *, base_in_workdir: bool = False) -> None:
  """Raises ConfigError when the configured stages need something the config does not give (weights, files).

  base_in_workdir: the workdir holds a finished pretrain stage, whose base model stages without `model.hf_dir`
  read (a rerun of `--config.stages=eval`, say); whether it was made with this config is the runner's check.
  """
  raise_if(run.run_errors(config, base_in_workdir=base_in_workdir))
