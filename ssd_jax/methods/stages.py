"""The stage registry: names in `config.stages` -> the functions that run them.

`prepare` resolves everything a run needs to know up front (model shape, mesh) and checks the parts of the
config that depend on them, so a wrong mesh fails before a single weight is loaded. Each stage marks itself
done in the workdir; a finished stage is skipped on rerun.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from collections.abc import Callable

import ml_collections
from absl import logging

from ssd_jax import config as config_lib
from ssd_jax.methods import runtime, ssd

# Stage name -> "module:function"; imported lazily so a stage's heavy imports cost only the runs using it.
STAGE_FUNCTIONS: dict[str, str] = {
  "forward": "ssd_jax.methods.forward_smoke:run_forward",
  "pretrain": "ssd_jax.methods.pretrain:run_pretrain",
  "synthesize": "ssd_jax.methods.synthesize:run_synthesize",
  "sft": "ssd_jax.methods.sft_stage:run_sft_stage",
  "eval": "ssd_jax.methods.eval_stage:run_eval",
  "report": "ssd_jax.methods.report_stage:run_report",
  "self_distill": "ssd_jax.methods.self_distill:run_self_distill",
  "plan": "ssd_jax.methods.plan:run_plan",
}


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a run will do, resolved before any expensive work."""

  names: tuple[str, ...]
  run: runtime.Runtime


def _resolve(name: str) -> Callable[[ml_collections.ConfigDict, str, runtime.Runtime], None]:
  module, function = STAGE_FUNCTIONS[name].split(":")
  return getattr(importlib.import_module(module), function)


def prepare(config: ml_collections.ConfigDict) -> Plan:
  """Resolves stages, model config and mesh; raises ConfigError naming the field on any mismatch."""
  names = tuple(s.strip() for s in config.stages.split(",") if s.strip())
  missing = [n for n in names if n not in STAGE_FUNCTIONS]
  if missing:
    raise config_lib.ConfigError(
      f"field 'stages': {missing} not available in this build; available: {sorted(STAGE_FUNCTIONS)}"
    )
  ssd.check_config(config)
  return Plan(names=names, run=runtime.Runtime.from_config(config))


def _marker(workdir: str, name: str) -> str:
  return os.path.join(workdir, "stages", f"{name}.done.json")


def run(plan: Plan, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Runs the stages of `plan` in order, skipping those already marked done in `workdir`."""
  os.makedirs(os.path.join(workdir, "stages"), exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  for name in plan.names:
    marker = _marker(workdir, name)
    if os.path.exists(marker):
      logging.info("stage %s: already done, skipping (%s)", name, marker)
      print(f"[{name}] already done, skipping")
      continue
    print(f"[{name}] starting")
    start = time.time()
    _resolve(name)(config, workdir, plan.run)
    seconds = time.time() - start
    if plan.run.is_coordinator:
      with open(marker, "w") as f:
        json.dump({"stage": name, "seconds": seconds}, f)
    print(f"[{name}] done in {seconds:.1f}s")
