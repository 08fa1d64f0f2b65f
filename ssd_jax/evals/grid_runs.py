"""Where a grid evaluation keeps its runs, and how the report reads them back as comparison candidates.

Layout under an evaluation root (the `eval` stage's directory):

    split.json                                   the dev/test split (`splits`)
    <model>/<checkpoint>/<setting label>/dev/    the dev problems: completions.jsonl, results.json, report.md
    <model>/<checkpoint>/<setting label>/test/   the test problems, run for the candidate chosen on dev
    <model>/selection.json                       the candidate chosen on dev and every candidate's dev scores

`results.json` carries, next to the `summarize` numbers, the run's "decoding" setting, "checkpoint" and
split "part", so a results file read on its own says how its numbers were obtained.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence

from ssd_jax.evals.comparison import Candidate
from ssd_jax.evals.protocol import DecodingSetting, Selection
from ssd_jax.evals.report import SUMMARY_FILE

FINAL_CHECKPOINT = "final"
SELECTION_FILE = "selection.json"
PARTS = ("dev", "test")


def checkpoint_label(step: int | None) -> str:
  """'final' for the exported end-of-training model, 'step_<n>' for an intermediate checkpoint."""
  return FINAL_CHECKPOINT if step is None else f"step_{step}"


def run_dir(root: str | pathlib.Path, model: str, checkpoint: str, setting: DecodingSetting, part: str) -> pathlib.Path:
  """The directory of one run: `part` is 'dev' or 'test'."""
  if part not in PARTS:
    raise ValueError(f"part must be one of {PARTS}, got {part!r}")
  return pathlib.Path(root) / model / checkpoint / setting.label / part


def run_metadata(checkpoint: str, setting: DecodingSetting, part: str) -> dict:
  """The fields a run adds to its results.json (merged into the summary given to `write_report`)."""
  return {"checkpoint": checkpoint, "decoding": dataclasses.asdict(setting), "part": part}


def load_candidates(
  root: str | pathlib.Path, model: str, checkpoints: Sequence[str], settings: Sequence[DecodingSetting]
) -> list[Candidate]:
  """Every (checkpoint, setting) run of `model`, in preference order: checkpoints as given, then settings.

  A candidate's records are those of its dev run plus, where it exists, its test run.

  Raises:
    FileNotFoundError: naming the first candidate whose dev results are missing.
  """
  candidates = []
  for checkpoint in checkpoints:
    for setting in settings:
      per_problem = []
      for part in PARTS:
        path = run_dir(root, model, checkpoint, setting, part) / SUMMARY_FILE
        if path.is_file():
          per_problem += json.loads(path.read_text())["per_problem"]
        elif part == "dev":
          raise FileNotFoundError(f"no dev results for model {model!r} at {checkpoint}/{setting.label}: {path}")
      candidates.append(Candidate(checkpoint, setting, per_problem))
  return candidates


def weak_sandbox_reasons(root: str | pathlib.Path, models: Sequence[str]) -> list[str]:
  """The distinct reasons recorded by the runs of `models` that were graded in a weak sandbox ([] when
  isolation held for every one)."""
  reasons = set()
  for model in models:
    for path in sorted((pathlib.Path(root) / model).rglob(SUMMARY_FILE)):
      weak = (json.loads(path.read_text()).get("sandbox") or {}).get("weak")
      if weak:
        reasons.add(str(weak))
  return sorted(reasons)


def load_recorded_candidates(root: str | pathlib.Path, model: str) -> list[Candidate]:
  """The candidates of `model` in the order its `selection.json` lists them, each with the setting its
  results.json records.

  Raises:
    FileNotFoundError: the selection or a candidate's dev results are missing.
  """
  candidates = []
  for key in read_selection(root, model)["dev_scores"]:
    checkpoint, label = key.split("/", 1)
    dev = pathlib.Path(root) / model / checkpoint / label / "dev" / SUMMARY_FILE
    if not dev.is_file():
      raise FileNotFoundError(f"no dev results for model {model!r} candidate {key}: {dev}")
    setting = DecodingSetting(**json.loads(dev.read_text())["decoding"])
    candidates += load_candidates(root, model, [checkpoint], [setting])
  return candidates


def write_selection(root: str | pathlib.Path, model: str, selection: Selection, *others: Selection) -> pathlib.Path:
  """Records `selection` (its candidates' dev scores too) and the choices of `others` (e.g. by pass@n)."""
  path = pathlib.Path(root) / model / SELECTION_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  record = {
    "best": selection.best,
    "metric": f"pass@{selection.metric_k}",
    "dev_scores": {key: {"metric": a, "pass@n": b} for key, (a, b) in selection.scores.items()},
    "best_by": {f"pass@{s.metric_k}": s.best for s in (selection, *others)},
  }
  path.write_text(json.dumps(record, indent=2))
  return path


def read_selection(root: str | pathlib.Path, model: str) -> Mapping:
  path = pathlib.Path(root) / model / SELECTION_FILE
  if not path.is_file():
    raise FileNotFoundError(f"no selection for model {model!r} at {path}; run the 'eval' stage first")
  return json.loads(path.read_text())
