"""Runs the configured stages in order inside the workdir, skipping those already done.

`prepare` resolves everything a run needs to know up front (model shape, mesh, what the stages need) so a
wrong mesh or a missing file fails before a single weight is loaded. Each stage marks itself done in the
workdir when it finishes; a finished stage is skipped on rerun and a half-finished one resumes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping

import ml_collections
from absl import logging

from ssd_jax import config as config_lib
from ssd_jax.pipeline.context import RunContext

Stage = Callable[[RunContext], None]


def prepare(config: ml_collections.ConfigDict, workdir: str, stages: Mapping[str, Stage]) -> RunContext:
  """Checks the stages and what they need, resolves model and mesh; raises ConfigError naming the field."""
  names = config_lib.stage_names(config)
  missing = [n for n in names if n not in stages]
  if missing:
    raise config_lib.ConfigError(f"field 'stages': {missing} not available in this build; available: {sorted(stages)}")
  config_lib.check_run(config)
  return RunContext.create(config, workdir)


def run(ctx: RunContext, stages: Mapping[str, Stage]) -> None:
  """Runs the stages of `ctx.config.stages` in order, skipping those already marked done."""
  workdir = ctx.layout.workdir
  os.makedirs(os.path.join(workdir, "stages"), exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(ctx.config.to_json_best_effort(indent=2))
  for name in config_lib.stage_names(ctx.config):
    marker = ctx.layout.stage_marker(name)
    if os.path.exists(marker):
      logging.info("stage %s: already done, skipping (%s)", name, marker)
      print(f"[{name}] already done, skipping")
      continue
    print(f"[{name}] starting")
    start = time.time()
    stages[name](ctx)
    seconds = time.time() - start
    if ctx.is_coordinator:
      with open(marker, "w") as f:
        json.dump({"stage": name, "seconds": seconds}, f)
    print(f"[{name}] done in {seconds:.1f}s")
