"""What a workdir remembers about its stages: config fingerprints, done markers with their outputs, one lock.

Each stage declares the config fields its outputs depend on (`STAGE_FIELDS`) and the stages whose outputs it
reads (`STAGE_READS`). Its fingerprint hashes those fields' values and the fingerprints its inputs were made
with, so a rerun with different values (a new T_train, another seed) is refused, naming the fields, instead of
mixing old and new artifacts; `--restart=STAGE` sets that stage's outputs aside and starts it over. A stage
writes `stages/<name>.started.json` when it starts and `stages/<name>.done.json` last, listing its outputs,
which are checked before it is skipped. The records also keep the code that ran the stage
(`code_version`), outside the fingerprint: a run patched since may resume what the stage finished.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

from ssd_jax.atomic_write import atomic_open
from ssd_jax.config import (
  EVAL_MODELS,
  STAGES,
  ConfigError,
  base_config,
  eval_model_names,
  evaluated_training_stages,
)
from ssd_jax.config.schema import get
from ssd_jax.config.self_distill import BLANK_FEEDBACK_ABLATIONS, METHODS, method_names
from ssd_jax.pipeline.content_signature import content_signature
from ssd_jax.pipeline.layout import RunLayout

# The model fields of stages that read a base model (`model.hf_dir`, else the pretrain stage's output, which
# is an input): which checkpoint, and the precision it computes and trains in. remat and attention change how
# the same function is computed, so they may change between runs.
BASE_MODEL_FIELDS = ("model.hf_dir", "model.dtype", "model.param_dtype")
# scan_layers also shapes the parameter tree a training stage checkpoints: another value cannot resume it, nor
# export its intermediate checkpoints. The router loss's weight changes what training computes.
TRAINING_MODEL_FIELDS = (*BASE_MODEL_FIELDS, "model.scan_layers", "model.router_aux_loss_coef")
# Fields a stage recorded only since they joined its fingerprint, not since the schema has them: a record
# without one ran with a value that is not known, so it counts as unchanged.
_LATE_FIELDS = ("model.scan_layers",)
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
  return sorted(found, key=STAGES.index)


def restart_outputs(name: str, layout: RunLayout) -> list[str]:
  """Everything stage `name` may have written under any config, relative to the workdir (what `--restart`
  sets aside): a model or evaluation that an earlier config named must not outlive the restart."""
  return layout.stage_outputs(name, EVAL_MODELS, (*METHODS, *BLANK_FEEDBACK_ABLATIONS))


def _plain(value: Any, path: str = "") -> Any:
  """A field's value as plain data; a section's without its `RUNTIME_FIELDS`."""
  if not isinstance(value, ml_collections.ConfigDict):
    return value
  return {k: _plain(v, f"{path}.{k}") for k, v in value.items() if f"{path}.{k}" not in RUNTIME_FIELDS}


@dataclasses.dataclass(frozen=True)
class Fingerprint:
  """The config values a stage depends on, and a hash of them with its inputs' fingerprints.

  `contents` holds a digest of what each file or directory it reads by path holds (`CONTENT_FIELDS`, by field
  path) and of each workdir file of `workdir_reads` (by its path in the workdir): a record without one (written
  before they were kept) counts as unchanged. `defaults` holds the schema's default of every field path: a
  field a record lacks (the schema grew since) counts as unchanged while it keeps its default (a field of
  `_LATE_FIELDS`: whatever its value).
  """

  fields: dict[str, Any]
  inputs: dict[str, str]
  contents: dict[str, str] = dataclasses.field(default_factory=dict)
  defaults: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

  @property
  def digest(self) -> str:
    text = json.dumps({"fields": self.fields, "inputs": self.inputs, "contents": self.contents}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

  def record(self) -> dict[str, Any]:
    """What a stage's started and done markers keep of it."""
    return {"fingerprint": self.digest, "fields": self.fields, "inputs": self.inputs, "contents": self.contents}

  def differences(self, recorded: Mapping[str, Any]) -> list[str]:
    """Human-readable differences from a recorded fingerprint: each changed field by its full path, then inputs."""
    out = []
    new, old = _flat(self.fields), _flat(recorded.get("fields", {}))
    missing = object()
    defaults = _flat(self.defaults)
    for path in sorted((set(new) | set(old)) - RUNTIME_FIELDS):
      a, b = old.get(path, missing), new.get(path, missing)
      if a is missing and path in defaults:
        a = defaults[path]
      if json.dumps(a, default=str, sort_keys=True) != json.dumps(b, default=str, sort_keys=True):
        out.append(f"{path}: {'(absent)' if a is missing else repr(a)} -> {'(absent)' if b is missing else repr(b)}")
    old_contents = recorded.get("contents", {})
    for path in sorted(set(self.contents) & set(old_contents)):
      if self.contents[path] != old_contents[path] and new.get(path) == old.get(path):
        what = f"{path} = {new[path]!r}" if path in new else f"the workdir's {path}"
        out.append(f"what {what} holds has changed (digest {old_contents[path]} -> {self.contents[path]})")
    old_inputs = recorded.get("inputs", {})
    for stage in sorted(set(self.inputs) | set(old_inputs)):
      if self.inputs.get(stage) != old_inputs.get(stage):
        out.append(f"the outputs of stage '{stage}' it read have changed")
    return out


def _flat(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested dicts of field values -> {dotted path: leaf value}."""
  flat = {}
  for key, value in fields.items():
    if isinstance(value, Mapping):
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


class StageRecords:
  """The `stages/` directory of a workdir: started and done markers."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.directory = os.path.join(workdir, "stages")

  def _path(self, name: str, kind: str) -> str:
    return os.path.join(self.directory, f"{name}.{kind}.json")

  def read(self, name: str, kind: str) -> dict | None:
    path = self._path(name, kind)
    if not os.path.isfile(path):
      return None
    with open(path) as f:
      return json.load(f)

  def code(self, name: str) -> dict[str, str] | None:
    """The code (`code_version.current()`) that stage `name`'s done marker, else its started one, records;
    None without either, or for a record written before the code was kept."""
    record = self.read(name, "done") or self.read(name, "started") or {}
    return record.get("code")

  def write(self, name: str, kind: str, record: Mapping[str, Any]) -> None:
    os.makedirs(self.directory, exist_ok=True)
    path = self._path(name, kind)
    with atomic_open(path) as f:
      json.dump(record, f, indent=2, default=str)

  def fingerprint(self, config: ml_collections.ConfigDict, name: str) -> Fingerprint:
    fields = {path: _plain(get(config, path), path) for path in STAGE_FIELDS[name]}
    schema = base_config()
    defaults = {path: _plain(get(schema, path), path) for path in STAGE_FIELDS[name]}
    defaults.update({path: fields[path] for path in _LATE_FIELDS if path in fields})
    inputs = {}
    for upstream in STAGE_READS.get(name, ()):
      done = self.read(upstream, "done")
      if done is not None:
        inputs[upstream] = done.get("fingerprint", "")
    read = [p for p in CONTENT_FIELDS if any(p == f or p.startswith(f + ".") for f in STAGE_FIELDS[name])]
    contents = {p: content_signature(get(config, p)) for p in read if get(config, p)}
    for path in workdir_reads(name, RunLayout(self.workdir)):
      contents[path] = content_signature(os.path.join(self.workdir, path))
    return Fingerprint(fields, inputs, contents, defaults)

  def check(self, name: str, fingerprint: Fingerprint, *, fields_only: bool = False) -> bool:
    """Whether stage `name` is done with this fingerprint (skip it); raises when its records disagree.

    With `fields_only`, only the config values are compared (before a run, when the stages it reads may
    still change).

    Raises:
      ConfigError: the stage started or finished with other values (listing them), or a done stage's
        outputs are missing.
    """
    for kind in ("done", "started"):
      record = self.read(name, kind)
      if record is None or "fingerprint" not in record:
        continue
      changes = fingerprint.differences(record)
      if fields_only:
        changes = [c for c in changes if not c.startswith("the outputs of stage")]
      if changes:
        changes = "\n    ".join(changes)
        state = "finished" if kind == "done" else "started"
        raise ConfigError(
          f"stage '{name}' {state} in {self.workdir} with other values:\n    {changes}\n  rerun with the "
          f"values it {state} with, use another --workdir, or pass --restart={name} to set its outputs aside "
          "and start it over"
        )
      if kind == "done":
        missing = [p for p in record.get("outputs", []) if not os.path.exists(os.path.join(self.workdir, p))]
        if missing:
          raise ConfigError(
            f"stage '{name}' is marked done but its outputs {missing} are missing; pass --restart={name}"
          )
        return True
    return False

  def set_aside(self, name: str, outputs: list[str]) -> str | None:
    """Moves stage `name`'s outputs and markers to `replaced/<time>/<name>/`; returns where (None: nothing)."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    target = os.path.join(self.workdir, "replaced", stamp, name)
    moved = False
    for relative in [*outputs, f"stages/{name}.started.json", f"stages/{name}.done.json"]:
      source = os.path.join(self.workdir, relative)
      if os.path.exists(source):
        os.makedirs(os.path.dirname(os.path.join(target, relative)), exist_ok=True)
        shutil.move(source, os.path.join(target, relative))
        moved = True
    return target if moved else None


class WorkdirBusyError(RuntimeError):
  """Another live run holds the workdir's lock."""


class WorkdirLock:
  """An exclusive lock on a workdir, so two runs never work in it at once (released when the process ends).

  Raises on entry, naming the holder's host and pid, when another live process holds it; a lock left by a
  dead process is free (the kernel releases it) and is taken over.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._file = None

  def __enter__(self) -> WorkdirLock:
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise WorkdirBusyError(
        f"workdir {os.path.dirname(self.path)} is in use by {holder}; wait for it or use another --workdir"
      ) from None
    self._file.seek(0)
    self._file.truncate()
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    self._file.write(f"pid {os.getpid()} on host {socket.gethostname()} since {since}")
    self._file.flush()
    return self

  def __exit__(self, *exc) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
