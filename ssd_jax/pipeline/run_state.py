"""What a workdir remembers about its stages: config fingerprints, done markers with their outputs.

Each stage declares the config fields its outputs depend on and the stages whose outputs it reads
(`stage_dependencies`). Its fingerprint hashes those fields' values and the fingerprints its inputs were made
with, so a rerun with different values (a new T_train, another seed) is refused, naming the fields, instead of
mixing old and new artifacts; `--restart=STAGE` sets that stage's outputs aside and starts it over. A stage
writes `stages/<name>.started.json` when it starts and `stages/<name>.done.json` last, listing its outputs,
which are checked before it is skipped. The records also keep the code that ran the stage
(`code_version`), outside the fingerprint: a run patched since may resume what the stage finished.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import ml_collections

from ssd_jax.atomic_write import atomic_open
from ssd_jax.config import ConfigError, base_config
from ssd_jax.config.schema import get
from ssd_jax.pipeline.content_signature import content_signature
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.pipeline.stage_dependencies import (
  CONTENT_FIELDS,
  RUNTIME_FIELDS,
  STAGE_FIELDS,
  STAGE_READS,
  workdir_reads,
)

# Fields a stage recorded only since they joined its fingerprint, not since the schema has them: a record
# without one ran with a value that is not known, so it counts as unchanged.
_LATE_FIELDS = ("model.scan_layers",)


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
    new, old = flat_fields(self.fields), flat_fields(recorded.get("fields", {}))
    missing = object()
    defaults = flat_fields(self.defaults)
    for path in sorted((set(new) | set(old)) - RUNTIME_FIELDS):
      a, b = old.get(path, missing), new.get(path, missing)
      if path.endswith(".problems.seed"):
        # Compared as the seed the built-in task's draw used: -1 is the run's, and a record from before the
        # field existed drew with the run's seed. Other sources draw nothing with it.
        if new.get(path.removesuffix("seed") + "source") != "builtin":
          continue
        a = old.get("seed", a) if a is missing or a == -1 else a
        b = new.get("seed", b) if b == -1 else b
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


def flat_fields(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested dicts of field values -> {dotted path: leaf value}."""
  flat = {}
  for key, value in fields.items():
    if isinstance(value, Mapping):
      flat.update(flat_fields(value, f"{prefix}{key}."))
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

  def earlier_code(self, name: str) -> list[dict[str, str]]:
    """The code of earlier runs that started stage `name` before the run its record names resumed it (oldest
    first; empty when one run did it all)."""
    record = self.read(name, "done") or self.read(name, "started") or {}
    return list(record.get("earlier_code", []))

  def started_record(self, name: str, fingerprint: Fingerprint, code: dict[str, str]) -> dict[str, Any]:
    """The started marker for a run of `code` starting (or resuming) stage `name`: a stage resumed from an
    earlier started marker keeps the code of the runs before in `earlier_code`."""
    record = {"stage": name, **fingerprint.record(), "code": code}
    before = self.read(name, "started") or {}
    earlier = [*before.get("earlier_code", []), *([before["code"]] if before.get("code") else [])]
    earlier = [c for i, c in enumerate(earlier) if c != code and c not in earlier[:i]]
    if earlier:
      record["earlier_code"] = earlier
    return record

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
