"""Intermediate checkpoints exported for evaluation belong to the stage that tunes the model."""

import os
import types

from pipeline_fixtures import micro_config

from ssd_jax import process_group
from ssd_jax.config.self_distill import method_names
from ssd_jax.pipeline import runner
from ssd_jax.pipeline.checkpoint_export import export_step
from ssd_jax.pipeline.layout import RunLayout


class _Exporting(Exception):
  """Raised by a test context where `export_step` would load the final model to export a step anew."""


def test_a_restarted_tuning_stage_sets_its_step_exports_aside(tmp_path):
  layout = RunLayout(str(tmp_path))
  # Pretrain and synthesize (no-ops here): sft reads them, and with a pretrain stage no model.hf_dir is needed.
  config = micro_config("pretrain,synthesize,sft,self_distill,eval")
  config.self_distill.rollout.max_new_tokens = 12  # Room for a prompt in the micro model's positions.
  tuned = ["ssd", *method_names(config.self_distill)]
  reused = []  # Step exports eval found ready-made: export_step returns them without reading the checkpoints.

  def tune(stage):
    def run(ctx):
      for name in tuned:
        if layout.tuning_stage(name) == stage:
          os.makedirs(os.path.join(layout.training_checkpoints(name), "2", "state"))

    return run

  def load_model(directory):
    raise _Exporting(directory)

  def evaluate(ctx):
    probe = types.SimpleNamespace(
      layout=layout, model_dir=layout.model, load_model=load_model, process_group=process_group.single_process()
    )
    for name in tuned:
      try:
        export_step(probe, name, 2)
        reused.append(name)
      except _Exporting:  # Exported anew from this run's checkpoint: stands in for the files export_hf writes.
        os.makedirs(layout.model_at_step(name, 2))
        open(os.path.join(layout.model_at_step(name, 2), "config.json"), "w").close()

  stages = {"pretrain": lambda ctx: None, "synthesize": lambda ctx: None, "sft": tune("sft")}
  stages.update(self_distill=tune("self_distill"), eval=evaluate)
  runner.run(runner.prepare(config, str(tmp_path), stages), stages)
  assert reused == []
  config.sft.learning_rate = config.self_distill.learning_rate = 1e-2
  runner.run(runner.prepare(config, str(tmp_path), stages), stages, restart=("sft", "self_distill", "eval"))
  assert reused == []
  for name in tuned:  # Set aside with the checkpoints they were exported from.
    exported = os.path.relpath(layout.model_at_step(name, 2), tmp_path)
    assert len(list(tmp_path.glob(f"replaced/*/{layout.tuning_stage(name)}/{exported}/config.json"))) == 1
