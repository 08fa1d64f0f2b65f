"""Where each stage of a run writes, under the workdir.

tokenizer/                  the built-in task's tokenizer (pretrain)
models/<name>/              Hugging Face directories: base (pretrain), ssd (sft), sdsd / sdpo (self_distill)
models/steps/<name>/step_<n>/  intermediate checkpoints exported for evaluation (eval.checkpoints); they belong
                            to the stage that tunes the model, so restarting it sets them aside
synthesize/records/         sample records; synthesize/summary.json their counts
<stage>/checkpoints, logs   Orbax checkpoints; metrics.jsonl + TensorBoard events
self_distill/<method>/      the on-policy learner's checkpoints, logs and held-out curve
eval/split.json             the dev/test split of the evaluation problems
eval/<model>/<checkpoint>/<setting>/{dev,test}/  completions, verdicts, results.json, report.md, plots
eval/<model>/selection.json the checkpoint and decoding chosen on dev
report/                     the comparison of every evaluated model
stages/<name>.done.json     what finished
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from ssd_jax.evals.splits import SPLIT_FILE


@dataclasses.dataclass(frozen=True)
class RunLayout:
  """Paths of a run's artifacts under `workdir`."""

  workdir: str

  def _path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  @property
  def task_tokenizer(self) -> str:
    return self._path("tokenizer")

  def stage_dir(self, stage: str) -> str:
    """The directory a training stage ('pretrain', 'sft', 'self_distill') keeps its state in."""
    return self._path(stage)

  def checkpoints(self, stage: str) -> str:
    return self._path(stage, "checkpoints")

  def logs(self, stage: str) -> str:
    return self._path(stage, "logs")

  def profile(self, stage: str, method: str = "") -> str:
    """Where `profile_steps` puts a stage's (or one self_distill method's) jax.profiler trace, for TensorBoard."""
    return self._path(stage, method, "profile")  # An empty method adds no path component.

  def model(self, name: str) -> str:
    """The Hugging Face directory a stage writes for model `name` ('base', 'ssd', 'sdsd' or 'sdpo')."""
    return self._path("models", name)

  @property
  def records(self) -> str:
    return self._path("synthesize", "records")

  @property
  def synthesis_summary(self) -> str:
    return self._path("synthesize", "summary.json")

  def self_distill(self, method: str) -> str:
    return self._path("self_distill", method)

  @property
  def teacher_diagnostic(self) -> str:
    return self._path("self_distill", "teacher_diagnostic.json")

  @property
  def forward_report(self) -> str:
    return self._path("forward.json")

  @property
  def plan_report(self) -> str:
    return self._path("plan.json")

  @property
  def toy_dir(self) -> str:
    return self._path("toy")

  def model_steps(self, name: str) -> str:
    """The Hugging Face directories of model `name` exported from its training checkpoints, one per step."""
    return self._path("models", "steps", name)

  def model_at_step(self, name: str, step: int) -> str:
    """The Hugging Face directory of model `name` exported from its training checkpoint at `step`."""
    return os.path.join(self.model_steps(name), f"step_{step}")

  def tuning_stage(self, name: str) -> str | None:
    """The stage that tunes model `name`: 'sft' for 'ssd', 'self_distill' for a method, None for 'base'."""
    if name == "base":
      return None
    return "sft" if name == "ssd" else "self_distill"

  def training_checkpoints(self, name: str) -> str | None:
    """The Orbax checkpoints of the training that wrote model `name` (None for 'base', which is not tuned)."""
    stage = self.tuning_stage(name)
    if stage == "self_distill":
      return os.path.join(self.self_distill(name), "checkpoints")
    return None if stage is None else self.checkpoints(stage)

  @property
  def eval_root(self) -> str:
    return self._path("eval")

  @property
  def eval_split_file(self) -> str:
    return os.path.join(self.eval_root, SPLIT_FILE)

  @property
  def report_dir(self) -> str:
    return self._path("report")

  def stage_outputs(self, stage: str, eval_models: Sequence[str], methods: Sequence[str]) -> list[str]:
    """What `stage` writes, relative to the workdir (what `--restart` sets aside).

    Args:
      stage: the stage's name.
      eval_models: the models the eval stage evaluates.
      methods: the self_distill stage's methods (each writes the model of its name).
    """
    paths = {
      "forward": [self.forward_report],
      "pretrain": [self.task_tokenizer, self.stage_dir("pretrain"), self.model("base")],
      "synthesize": [os.path.dirname(self.records)],
      # A tuning stage's step exports are made from its checkpoints: a restart makes them stale.
      "sft": [self.stage_dir("sft"), self.model("ssd"), self.model_steps("ssd")],
      "self_distill": [self.stage_dir("self_distill"), *map(self.model, methods), *map(self.model_steps, methods)],
      # The split too: a restart after a change of the evaluation problems or their split draws it anew.
      "eval": [self.eval_split_file, *(os.path.join(self.eval_root, m) for m in eval_models)],
      "report": [self.report_dir],
      "plan": [self.plan_report],
      "toy": [self.toy_dir],
    }[stage]
    return [os.path.relpath(p, self.workdir) for p in paths]

  def stage_marker(self, name: str) -> str:
    return self._path("stages", f"{name}.done.json")
