"""Every process of a multi-host run starts with the same config, workdir, restarts and source code.

Each TPU VM of a slice runs its own `python -m ssd_jax.main`; a host left on another checkout, or started with
another flag, would join the same collectives with other shapes or other data (a hang, or a model trained on
a mix), and its records would disagree with process 0's. Before any stage runs, the processes exchange what
they were started with and all stop, with the same message naming each difference, when they differ.
Only the fields that are a host's own business may differ (`HOST_FIELDS`: its sandbox workers, its progress
bars); log and checkpoint cadences may not (a host checkpointing asynchronously, or checking for non-finite
losses at other steps, falls out of step with the others). A host that cannot say what it was started with
(an unreadable source file) stops every host with its reason, not at a later barrier.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from ssd_jax import config as config_lib
from ssd_jax.pipeline import code_version
from ssd_jax.pipeline.run_state import flat_fields
from ssd_jax.process_group import ProcessGroup

MAX_LISTED = 8  # differences named per process; the rest are counted
HOST_FIELDS = frozenset({"eval.workers", "pretrain.progress_bar", "sft.progress_bar"})


def started_with(config: ml_collections.ConfigDict, workdir: str, restart: Sequence[str]) -> dict[str, Any]:
  """What this process was started with, as JSON-ready data."""
  return {
    "config": json.loads(config.to_json_best_effort()),
    "workdir": os.path.normpath(workdir),
    "restart": sorted(set(restart)),
    "code": {**code_version.current(), "source": code_version.source_digest()},
  }


def differences(starts: Sequence[Mapping[str, Any]]) -> list[str]:
  """Each process's differences from process 0, as sentences; empty when they all agree.

  Args:
    starts: `started_with` of every process, in process order.
  """
  first = starts[0]
  fields = flat_fields(first["config"])
  out = []
  for index, start in enumerate(starts[1:], 1):
    found = []
    other = flat_fields(start["config"])
    for path in sorted((set(fields) | set(other)) - HOST_FIELDS):
      if fields.get(path, "(absent)") != other.get(path, "(absent)"):
        found.append(f"field '{path}' {fields.get(path, '(absent)')!r} vs {other.get(path, '(absent)')!r}")
    for flag in ("workdir", "restart"):
      if first[flag] != start[flag]:
        found.append(f"--{flag} {first[flag]!r} vs {start[flag]!r}")
    if first["code"] != start["code"]:
      mine, theirs = code_version.describe(first["code"]), code_version.describe(start["code"])
      same = mine == theirs  # Same commit, other files: edits not committed, or another install.
      found.append(f"code {mine} vs {theirs}" + (" (same commit, other source files)" if same else ""))
    if found:
      more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
      out.append(f"process {index} differs from process 0: {'; '.join(found[:MAX_LISTED])}{more}")
  return out


def check_hosts_agree(
  group: ProcessGroup, config: ml_collections.ConfigDict, workdir: str, restart: Sequence[str]
) -> None:
  """A collective: raises the same ConfigError on every process when they were started differently.

  Raises:
    ConfigError: naming each process's differences from process 0, or the processes that could not say what
      they were started with (an unreadable source file) and why.
  """
  if group.count == 1:
    return
  try:
    mine = started_with(config, workdir, restart)
  except Exception as e:  # pylint: disable=broad-except  # Every host must reach the gather below.
    mine = {"error": f"{type(e).__name__}: {e}"}
  starts = [json.loads(payload) for payload in group.allgather(json.dumps(mine, sort_keys=True, default=str).encode())]
  failed = [f"process {i}: {start['error']}" for i, start in enumerate(starts) if "error" in start]
  if failed:
    raise config_lib.ConfigError(f"a process could not say what it was started with: {'; '.join(failed)}")
  found = differences(starts)
  if found:
    raise config_lib.ConfigError(
      "the processes of this run were started with different settings: "
      + "; ".join(found)
      + ". Start every host from the same checkout with the same flags"
    )
