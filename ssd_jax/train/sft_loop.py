"""A reusable training loop: resume, iterate batches, step, log, checkpoint.

The loop knows nothing about the loss: any `step_fn(state, batch) -> (state, metrics)` works (the SFT step,
a teacher-KL step). Metrics must include `loss` and `tokens` for the progress bar. The data iterator is any
object with `__next__`, `get_state()` and `set_state(state)` (a Grain `DatasetIterator` qualifies); its
position is checkpointed with the state, so a restarted run sees the same batches in the same order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import jax

from ssd_jax.train.checkpointing import Checkpointer, restore_or_init
from ssd_jax.train.metrics import MetricsWriter, ProgressBar, to_scalars
from ssd_jax.train.train_state import TrainState

StepFn = Callable[[TrainState, Any], tuple[TrainState, Mapping[str, jax.Array]]]


class CheckpointableIterator(Protocol):
  def __next__(self) -> Any: ...
  def get_state(self) -> Any: ...
  def set_state(self, state: Any) -> None: ...


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How long to train and how often to log and checkpoint.

  Attributes:
    total_steps: the loop stops when the state's step reaches this.
    checkpoint_dir: where checkpoints go; None disables checkpointing and resuming.
    checkpoint_every: save every this many steps (the last step is always saved).
    max_to_keep: number of newest checkpoints kept (None keeps all).
    log_every: fetch metrics to the host and write them every this many steps.
    async_checkpointing: write checkpoints in the background.
    progress_bar: show a tqdm bar on process 0.
  """

  total_steps: int
  checkpoint_dir: str | None = None
  checkpoint_every: int = 250
  max_to_keep: int | None = 3
  log_every: int = 1
  async_checkpointing: bool = True
  progress_bar: bool = True

  def __post_init__(self):
    for name in ("total_steps", "checkpoint_every", "log_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"LoopConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.max_to_keep is not None and self.max_to_keep < 1:
      raise ValueError(f"LoopConfig.max_to_keep must be >= 1 or None, got {self.max_to_keep}")


class _MetricsLog:
  """Buffers per-step device metrics and writes them at log points (one host sync per log point)."""

  def __init__(self, writer: MetricsWriter | None, bar: ProgressBar):
    self._writer = writer
    self._bar = bar
    self._pending: list[tuple[int, Mapping[str, jax.Array]]] = []

  def add(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
    self._pending.append((step, metrics))

  def flush(self) -> None:
    if not self._pending:
      return
    fetched = [(step, to_scalars(metrics)) for step, metrics in self._pending]
    for step, scalars in fetched:
      if self._writer is not None:
        self._writer.write(step, scalars)
    tokens = sum(scalars.get("tokens", 0.0) for _, scalars in fetched)
    self._bar.update(len(fetched), tokens, fetched[-1][1].get("loss", float("nan")))
    self._pending = []


def run_sft(
  step_fn: StepFn,
  initial_state: TrainState,
  make_iterator: Callable[[], CheckpointableIterator | Iterator[Any]],
  config: LoopConfig,
  *,
  metrics_writer: MetricsWriter | None = None,
  place_batch: Callable[[Any], Any] | None = None,
  metadata: Mapping[str, Any] | None = None,
) -> TrainState:
  """Trains from the latest checkpoint in `config.checkpoint_dir` (or `initial_state`) to `total_steps`.

  Args:
    step_fn: the jitted step; it may donate its state argument.
    initial_state: placed step-0 state; also the shape/sharding target when restoring.
    make_iterator: builds a fresh data iterator positioned at the start of the data.
    config: loop settings.
    metrics_writer: where metrics go (None: progress bar only).
    place_batch: turns a host batch into device arrays (e.g. `SftStep.place_batch` on several hosts).
    metadata: JSON-serialisable dict stored with every checkpoint (e.g. the run config).

  Returns:
    The final state. Pending asynchronous saves are finished before returning, also on error.
  """
  checkpointer = None
  if config.checkpoint_dir is not None:
    checkpointer = Checkpointer(
      config.checkpoint_dir,
      save_interval_steps=config.checkpoint_every,
      max_to_keep=config.max_to_keep,
      async_save=config.async_checkpointing,
    )
  try:
    restored = restore_or_init(checkpointer, initial_state)
    state, step = restored.state, restored.step
    iterator = make_iterator()
    if restored.data_state is not None:
      iterator.set_state(restored.data_state)
    if step > 0:
      logging.info("resumed from step %d", step)
    bar = ProgressBar(config.total_steps, initial=min(step, config.total_steps), enabled=config.progress_bar)
    log = _MetricsLog(metrics_writer, bar)
    try:
      while step < config.total_steps:
        try:
          batch = next(iterator)
        except StopIteration:
          logging.warning("data ran out at step %d of %d", step, config.total_steps)
          break
        if place_batch is not None:
          batch = place_batch(batch)
        state, metrics = step_fn(state, batch)
        step += 1
        log.add(step, metrics)
        if step % config.log_every == 0:
          log.flush()
        if checkpointer is not None and checkpointer.should_save(step):
          checkpointer.save(step, state, data_state=_data_state(iterator), metadata=_metadata(metadata, step))
      log.flush()
      if checkpointer is not None and checkpointer.latest_step() != step and step > 0:
        checkpointer.save(step, state, data_state=_data_state(iterator), metadata=_metadata(metadata, step), force=True)
    finally:
      bar.close()
  finally:
    if checkpointer is not None:
      checkpointer.close()
  return state


def _data_state(iterator: Any) -> Any:
  """The iterator position, or None for plain iterators (then a resumed run restarts the data)."""
  get_state = getattr(iterator, "get_state", None)
  return get_state() if get_state is not None else None


def _metadata(metadata: Mapping[str, Any] | None, step: int) -> dict[str, Any]:
  return {**(metadata or {}), "step": step}
