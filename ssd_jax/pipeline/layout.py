"""Where each stage of a run writes, under the workdir.

tokenizer/                  the built-in task's tokenizer (pretrain)
models/<name>/              Hugging Face directories: base (pretrain), ssd (sft), sdsd / sdpo (self_distill)
models/steps/<name>/step_<n>/  intermediate checkpoints exported for evaluation (eval.checkpoints)
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


@dataclasses.dataclass(frozen=True)
class RunLayout:
  """Paths of a run's artifacts under `workdir`."""

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

  def model_at_step(self, name: str, step: int) -> str:
    """The Hugging Face directory of model `name` exported from its training checkpoint at `step`."""
    return self._path("models", "steps", name, f"step_{step}")

  def training_checkpoints(self, name: str) -> str | None:
    """The Orbax checkpoints of the training that wrote model `name` (None for 'base', which is not tuned)."""
    if name == "base":
      return None
    return self.checkpoints("sft") if name == "ssd" else os.path.join(self.self_distill(name), "checkpoints")

  @property
  def eval_root(self) -> str:
    return self._path("eval")

  @property
  def report_dir(self) -> str:
    return self._path("report")

  def stage_marker(self, name: str) -> str:
    return self._path("stages", f"{name}.done.json")
