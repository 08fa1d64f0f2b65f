"""The `toy` stage: the SSD paper's lock/fork toy, pre-trained, self-distilled and scored exactly.

Writes `toy/result.json` (exact pass@k of the trained base and SSD models and of their tabular ideals over the
T_eval grid, and each one's best T_eval) and prints the comparison; see `ssd_jax.pipeline.ssd_toy_run`.
"""

from __future__ import annotations

import json
import os

from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.ssd_toy_run import ToyRunConfig, run_toy, summary_table


def run(ctx: RunContext) -> None:
  """Runs the toy on the configured model shape and writes `toy/result.json`."""
  result = run_toy(ctx.model_cfg, ToyRunConfig.from_section(ctx.config.toy, ctx.seed))
  if ctx.is_coordinator:
    directory = ctx.layout.toy_dir
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "result.json"), "w") as f:
      json.dump(result, f, indent=2)
    print(summary_table(result))
