"""The one training loop: resume, draw batches, step, run hooks, log, checkpoint.

Every method trains through `train_loop`: a method is a batch source plus a step (whose loss is the method's).
The loop knows nothing about either. A source gives the batch of a step (`next_batch(step, state)`): a Grain
iterator for SFT (`IteratorSource`, whose position is checkpointed so a restart sees the same batches in the
same order), or on-policy rollouts of the current parameters (a pure function of the step, so nothing to
checkpoint). Hooks run at the start, after every step (e.g. periodic evaluation, whose scalars join that step's
metrics) and at log points (e.g. progress lines). Step metrics must include `loss` and `tokens` for the progress bar.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import jax

from ssd_jax.train.checkpoint_resume import restore_or_init
from ssd_jax.train.checkpointing import Checkpointer
from ssd_jax.train.metrics import MetricsWriter, ProgressBar, to_scalars

StepFn = Callable[[Any, Any], tuple[Any, Mapping[str, jax.Array]]]


class BatchSource(Protocol):
  """Where a loop's batches come from."""

  def next_batch(self, step: int, state: Any) -> tuple[Any, dict[str, float]]:
    """The batch that trains step `step` + 1 from `state`, and host scalars to log with it.

    Raises:
      StopIteration: the data ran out.
    """

  def get_state(self) -> Any:
    """The source's position, checkpointed with the state (None when the source is stateless)."""

  def set_state(self, state: Any) -> None:
    """Restores a position from `get_state`."""

  # Optional: `reads_state(step) -> bool`, whether `next_batch(step, state)` computes with the state's values
  # (on-policy rollouts sample it); the loop then checks the guarded metrics of the step that made the state
  # first, so a diverged state stops the run as such, not as whatever error the sampler meets.


class Hook:
  """Called by `train_loop`; each method returns host scalars to log at that step (or None)."""

  def begin(self, step: int, state: Any) -> dict[str, float] | None:
    """Before the first step of this run (`step` > 0 when resuming)."""
    del step, state
    return None

  def after_step(self, step: int, state: Any) -> dict[str, float] | None:
    """After optimizer step `step` (e.g. a periodic evaluation)."""
    del step, state
    return None

  def reads_state(self, step: int) -> bool:
    """Whether `after_step(step)` computes with the state's values (an evaluation samples it): the loop then
    checks that step's guarded metrics first, so a diverged state never reaches it."""
    del step
    return False

  def on_log(self, step: int, scalars: Mapping[str, float]) -> None:
    """At each log point, with the logged step's scalars (e.g. a progress line)."""
    del step, scalars


class IteratorSource:
  """A `BatchSource` over a data iterator (a Grain `DatasetIterator`, or any iterator).

  Args:
    make_iterator: builds a fresh iterator positioned at the start of the data.
    place_batch: turns a host batch into device arrays (e.g. `TrainStep.place_batch`).
  """

  def __init__(self, make_iterator: Callable[[], Iterator[Any]], place_batch: Callable[[Any], Any] | None = None):
    self._iterator = make_iterator()
    self._place = place_batch

  def next_batch(self, step: int, state: Any) -> tuple[Any, dict[str, float]]:
    del step, state
    batch = next(self._iterator)
    return (batch if self._place is None else self._place(batch)), {}

  def get_state(self) -> Any:
    get_state = getattr(self._iterator, "get_state", None)
    return get_state() if get_state is not None else None  # A plain iterator restarts the data on resume.

  def set_state(self, state: Any) -> None:
    self._iterator.set_state(state)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How long to train and how often to log and checkpoint.

  Attributes:
    total_steps: the loop stops when the step reaches this.
    checkpoint_dir: where checkpoints go; None disables checkpointing and resuming.
    checkpoint_every: save every this many steps (the last step is always saved).
    max_to_keep: number of newest checkpoints kept (None keeps all).
    log_every: fetch metrics to the host and write them every this many steps (and at the last).
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


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss, gradient norm or parameter norm; nothing after the last good checkpoint
  is kept."""


# Metrics whose non-finite value stops training: the state after such a step is not worth keeping. The loss and
# gradient norm come from the parameters before the step's update, the parameter norm from those after it (an
# update that overflowed, or weights grown past ~1e19, whose squares overflow float32).
GUARDED_METRICS = ("loss", "grad_norm", "param_norm")


def _check_finite(step: int, scalars: Mapping[str, float]) -> None:
  """Raises `NonFiniteError` naming `step` when one of its guarded metrics is not finite."""
  bad = {k: scalars[k] for k in GUARDED_METRICS if k in scalars and not math.isfinite(scalars[k])}
  if bad:
    raise NonFiniteError(
      f"step {step}: non-finite {', '.join(f'{k} = {v}' for k, v in bad.items())}; training stopped, the "
      "last good checkpoint is kept and nothing is exported (lower the learning rate or check the data)"
    )


class _MetricsLog:
  """Buffers per-step device metrics and writes them at log points (one host sync per log point).

  Every flush checks the guarded metrics first: a non-finite one raises `NonFiniteError` naming the first
  bad step, before anything of that step is written or checkpointed.
  """

  def __init__(self, writer: MetricsWriter | None, bar: ProgressBar):
    self._writer = writer
    self._bar = bar
    self._pending: list[tuple[int, Mapping[str, jax.Array], dict[str, float]]] = []

  def add(self, step: int, metrics: Mapping[str, jax.Array], host: dict[str, float]) -> None:
    self._pending.append((step, metrics, host))

  def flush(self) -> dict[str, float] | None:
    """Writes the pending steps; returns the last one's scalars (None when nothing was pending)."""
    if not self._pending:
      return None
    fetched = [(step, {**to_scalars(metrics), **host}) for step, metrics, host in self._pending]
    self._pending = []
    for step, scalars in fetched:
      _check_finite(step, scalars)
    for step, scalars in fetched:
      if self._writer is not None:
        self._writer.write(step, scalars)
    tokens = sum(scalars.get("tokens", 0.0) for _, scalars in fetched)
    self._bar.update(len(fetched), tokens, fetched[-1][1].get("loss", float("nan")))
    return fetched[-1][1]


def train_loop(
  step_fn: StepFn,
  initial_state: Any,
  source: BatchSource,
  config: LoopConfig,
  *,
  hooks: tuple[Hook, ...] = (),
  metrics_writer: MetricsWriter | None = None,
  metadata: Mapping[str, Any] | None = None,
) -> Any:
  """Trains from the latest checkpoint in `config.checkpoint_dir` (or `initial_state`) to `total_steps`.

  Args:
    step_fn: `(state, batch) -> (state, metrics)`, jitted; it may donate its state argument.
    initial_state: placed step-0 state (a pytree with a `step` leaf); also the restore target.
    source: gives each step's batch; its position is checkpointed.
    config: loop settings.
    hooks: run at the start and after every step (a hook that reads the state only after a step whose
      guarded metrics are finite); their scalars are logged with the step.
    metrics_writer: where metrics go (None: progress bar only).
    metadata: JSON-serialisable dict stored with every checkpoint.

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
    # A source with a position (a Grain iterator) must find it in the checkpoint, or it would restart its data.
    restored = restore_or_init(checkpointer, initial_state, with_data=source.get_state() is not None)
    state, step = restored.state, restored.step
    if restored.data_state is not None:
      source.set_state(restored.data_state)
    if metrics_writer is not None:
      metrics_writer.resume_at(step)  # Steps after the checkpoint are trained again: drop their old lines.
    if step > 0 and jax.process_index() == 0:
      print(f"resumed from step {step} ({config.checkpoint_dir})")
    source_reads_state = getattr(source, "reads_state", lambda step: False)
    bar = ProgressBar(config.total_steps, initial=min(step, config.total_steps), enabled=config.progress_bar)
    log = _MetricsLog(metrics_writer, bar)

    def save(force: bool = False) -> None:
      if checkpointer is not None:
        checkpointer.save(
          step, state, data_state=source.get_state(), metadata={**(metadata or {}), "step": step}, force=force
        )

    try:
      for hook in hooks:
        scalars = hook.begin(step, state)
        if scalars and metrics_writer is not None:
          metrics_writer.write(step, scalars)
      while step < config.total_steps:
        try:
          batch, host = source.next_batch(step, state)
        except StopIteration:
          logging.warning("data ran out at step %d of %d", step, config.total_steps)
          break
        state, metrics = step_fn(state, batch)
        step += 1
        reads_state = [hook.reads_state(step) for hook in hooks] + [source_reads_state(step)]
        if any(reads_state):  # Waits for the step, as a log point does.
          _check_finite(step, to_scalars({k: metrics[k] for k in GUARDED_METRICS if k in metrics}))
        for hook in hooks:
          host.update(hook.after_step(step, state) or {})
        log.add(step, metrics, host)
        if step % config.log_every == 0 or step == config.total_steps:
          last = log.flush()
          for hook in hooks:
            hook.on_log(step, last)
        if checkpointer is not None and checkpointer.should_save(step):
          log.flush()  # A checkpoint is only written after its steps' losses were seen to be finite.
          save()
        if checkpointer is not None:
          checkpointer.check_for_errors()  # A failed background save (disk full) stops training here.
      log.flush()
      if checkpointer is not None and checkpointer.latest_step() != step and step > 0:
        save(force=True)
        checkpointer.wait_until_finished()
    finally:
      bar.close()
  finally:
    if checkpointer is not None:
      checkpointer.close()
  return state
