"""Training metrics: JSONL lines, TensorBoard scalars, and a tqdm progress bar; process 0 writes.

Every process may call these; on processes other than 0 they do nothing, so callers need no branching.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import tqdm

from ssd_jax.atomic_write import atomic_open


def to_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Host floats from a dict of scalar arrays/numbers (blocks until they are computed)."""
  scalars = {}
  for name, value in jax.device_get(dict(metrics)).items():
    array = np.asarray(value)
    if array.size != 1:
      raise ValueError(f"metric {name!r} must be a scalar, got shape {array.shape}")
    scalars[name] = float(array.reshape(()))
  return scalars


def _records(path: str) -> list[tuple[str, dict]]:
  """(line, record) of each line of a JSONL file; an unparsable last line (torn by a kill mid-append) is
  dropped, an unparsable line before it raises."""
  with open(path, encoding="utf-8") as f:
    lines = [line for line in f if line.strip()]
  records = []
  for index, line in enumerate(lines):
    try:
      records.append((line, json.loads(line)))
    except json.JSONDecodeError:
      if index == len(lines) - 1:
        break
      raise
  return records


def truncate_jsonl(path: str, step: int) -> None:
  """Keeps the lines of a `{"step": ...}` JSONL file up to `step` (none when `step` is 0); atomic."""
  if not os.path.exists(path):
    return
  kept = [
    line if line.endswith("\n") else line + "\n"  # Appends after it start a line of their own.
    for line, record in _records(path)
    if step > 0 and record["step"] <= step
  ]
  with atomic_open(path, encoding="utf-8") as f:
    f.writelines(kept)


def metric_by_step(path: str, name: str) -> dict[int, float | None]:
  """step -> the value of metric `name` at that step, for the lines of a `MetricsWriter` JSONL file that hold it
  (None: written as non-finite); empty when the file does not exist."""
  if not os.path.exists(path):
    return {}
  return {record["step"]: record[name] for _, record in _records(path) if name in record}


def _event_writer(logdir: str, purge_step: int | None = None):
  """A TensorBoard event writer. tensorboardX is imported here, not with the module: it imports torch where
  torch is installed (seconds), which every command would pay before its first check."""
  import tensorboardX  # pylint: disable=g-import-not-at-top

  return tensorboardX.SummaryWriter(logdir, flush_secs=30, purge_step=purge_step)


class MetricsWriter:
  """Appends `{"step": s, **metrics}` to `metrics.jsonl` and scalars to TensorBoard event files.

  Args:
    logdir: directory for `metrics.jsonl` and the event file.
    tensorboard: whether to write TensorBoard event files as well.
    is_primary: whether this process writes; defaults to `jax.process_index() == 0`.
  """

  def __init__(self, logdir: str | os.PathLike, *, tensorboard: bool = True, is_primary: bool | None = None):
    self.is_primary = jax.process_index() == 0 if is_primary is None else is_primary
    self.logdir = os.fspath(logdir)
    self.jsonl_path = os.path.join(self.logdir, "metrics.jsonl")
    self._tensorboard = tensorboard
    self._jsonl = None
    self._events = None
    if self.is_primary:
      os.makedirs(self.logdir, exist_ok=True)
      self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
      if tensorboard:
        self._events = _event_writer(self.logdir)

  def resume_at(self, step: int) -> None:
    """Forgets what a run starting at `step` writes again: JSONL lines and TensorBoard points after `step`
    (all of them when `step` is 0, whose start-of-run scalars are written again too)."""
    if not self.is_primary:
      return
    self._jsonl.close()
    truncate_jsonl(self.jsonl_path, step)
    self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
    if self._events is not None:
      # TensorBoard drops the points at or after `purge_step` that earlier event files hold.
      self._events.close()
      self._events = _event_writer(self.logdir, purge_step=step + 1 if step else 0)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Logs scalar `metrics` at `step`; non-finite values are written as JSON null."""
    if not self.is_primary:
      return
    scalars = to_scalars(metrics)
    record = {"step": int(step)}
    record.update({k: (v if math.isfinite(v) else None) for k, v in scalars.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._events is not None:
      for tag, value in scalars.items():
        self._events.add_scalar(tag, value, int(step))
      self._events.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._events is not None:
      self._events.close()

  def __enter__(self) -> MetricsWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class ProgressBar:
  """tqdm bar over optimizer steps showing the latest loss and tokens per second (process 0 only).

  Args:
    total: last step of the run.
    initial: step the run starts (or resumes) from.
    enabled: set False to silence it (tests, non-interactive jobs).
  """

  def __init__(self, total: int, initial: int = 0, *, enabled: bool = True):
    self._bar = None
    if enabled and jax.process_index() == 0:
      self._bar = tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
    self._last_time = time.perf_counter()

  def update(self, steps: int, tokens: float, loss: float) -> float:
    """Advances by `steps` that trained on `tokens` tokens; returns tokens/s since the last update."""
    now = time.perf_counter()
    tokens_per_second = tokens / max(now - self._last_time, 1e-9)
    self._last_time = now
    if self._bar is not None:
      self._bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_second:,.0f}", refresh=False)
      self._bar.update(steps)
    return tokens_per_second

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
