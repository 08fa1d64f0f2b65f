"""Training speed as a loop reports it: tokens/s, step time, model FLOPs utilisation, and a profiler window.

MFU = model FLOPs per second / peak FLOPs of all chips. Model FLOPs per trained token follow the usual
convention: 6 x the parameters that take part in matmuls (blocks and unembedding; the embedding lookup is not
a matmul) plus causal attention, 6 x layers x heads x head_dim x length (scores and values, forward and
backward, half the positions on average). Recomputation under remat is not counted (that would be hardware
FLOPs). Peaks are the dense bf16 figures of the public TPU specs; other devices get no MFU.
`SpeedHook` and `ProfileHook` put both into `train.loop.train_loop`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import jax

from ssd_jax.train.loop import Hook

# Dense bf16 FLOP/s per chip by `device_kind`.
PEAK_BF16_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5": 459e12, "TPU v6 lite": 918e12}


def forward_flops_per_token(model_cfg, seq_len: int) -> float:
  """Model FLOPs of the forward pass per token of a [batch, seq_len] input (a third of a training step's).

  Args:
    model_cfg: an `ssd_jax.model.ModelConfig`.
    seq_len: tokens per row.
  """
  d = model_cfg.hidden_size
  matmul_params = model_cfg.num_params - model_cfg.vocab_size * d  # Drop the lookup table...
  if model_cfg.tie_embeddings:
    matmul_params += model_cfg.vocab_size * d  # ...which, when tied, is also the unembedding matmul.
  attention = 2 * model_cfg.num_layers * model_cfg.num_heads * model_cfg.head_dim * seq_len
  return 2.0 * matmul_params + attention


def train_flops_per_token(model_cfg, seq_len: int) -> float:
  """Model FLOPs (forward + backward) per token of a [batch, seq_len] training step."""
  return 3.0 * forward_flops_per_token(model_cfg, seq_len)


def peak_flops(devices=None) -> float | None:
  """Summed peak bf16 FLOP/s of `devices` (default: all), or None when a device kind has no known peak."""
  devices = jax.devices() if devices is None else devices
  peaks = [PEAK_BF16_FLOPS.get(d.device_kind) for d in devices]
  return None if not peaks or None in peaks else float(sum(peaks))


class Throughput:
  """Measures the steps between two log points (call `measure` right after the host fetched the metrics).

  The first call only starts the clock: the steps before it include compilation.

  Args:
    flops_per_token: from `train_flops_per_token`.
    peak: summed peak FLOP/s of the chips (None: no MFU).
    clock: seconds, monotonic (tests pass a fake one).
  """

  def __init__(self, flops_per_token: float, peak: float | None, clock: Callable[[], float] = time.perf_counter):
    self._flops_per_token = flops_per_token
    self._peak = peak
    self._clock = clock
    self._last: float | None = None
    self._excluded = 0.0

  def exclude(self, seconds: float) -> None:
    """Leaves `seconds` (spent on something other than training, e.g. an evaluation) out of the next interval."""
    self._excluded += seconds

  def timed(self, fn: Callable[[], object]) -> object:
    """fn(), its wall time excluded from the interval it falls in."""
    start = self._clock()
    try:
      return fn()
    finally:
      self.exclude(self._clock() - start)

  def measure(self, steps: int, tokens: float) -> dict[str, float]:
    """{'tokens_per_s', 'step_time_s', 'mfu'} over the `steps` steps (and `tokens` tokens) since the last call."""
    now = self._clock()
    last, self._last = self._last, now
    excluded, self._excluded = self._excluded, 0.0
    elapsed = None if last is None else now - last - excluded
    if elapsed is None or steps <= 0 or elapsed <= 0:
      return {}
    out = {"tokens_per_s": tokens / elapsed, "step_time_s": elapsed / steps}
    if self._peak:
      out["mfu"] = tokens * self._flops_per_token / elapsed / self._peak
    return out


def parse_profile_steps(text: str) -> tuple[int, int] | None:
  """'' -> None; 'A,B' -> (A, B): trace steps A..B-1 (after A steps finished, until B have)."""
  if not text:
    return None
  parts = text.split(",")
  try:
    start, stop = (int(p) for p in parts)
  except ValueError:
    raise ValueError(f"profile_steps must be 'START,STOP' (e.g. '10,13'), got {text!r}") from None
  if not 0 <= start < stop:
    raise ValueError(f"profile_steps must satisfy 0 <= START < STOP, got {text!r}")
  return start, stop


class ProfileWindow:
  """Writes a `jax.profiler` trace of the steps in [start, stop) to `logdir` (one per process).

  Call `after_step(step)` with the number of finished steps; `close()` stops a trace still open.
  """

  def __init__(self, steps: tuple[int, int] | None, logdir: str, *, start_trace=None, stop_trace=None):
    self._steps = steps
    self._logdir = logdir
    self._start = start_trace or jax.profiler.start_trace
    self._stop = stop_trace or jax.profiler.stop_trace
    self._open = False

  def after_step(self, step: int) -> None:
    if self._steps is None:
      return
    start, stop = self._steps
    if step == start and not self._open:
      os.makedirs(self._logdir, exist_ok=True)
      self._start(self._logdir)
      self._open = True
    elif step >= stop and self._open:
      self.close()

  def wants_sync(self, step: int) -> bool:
    """Whether `after_step(step)` will start or stop the trace."""
    return self._steps is not None and (step == self._steps[0] or (self._open and step >= self._steps[1]))

  def close(self) -> None:
    if self._open:
      self._stop()
      self._open = False


class SpeedHook(Hook):
  """Adds tokens_per_s, step_time_s and mfu to the metrics of each log point of `train_loop`.

  At a log point it waits for the step to finish (the loop's metric fetch right after would wait anyway).

  Args:
    meter: the `Throughput` to measure with.
    tokens_per_step: tokens one step processes (rows x sequence length, padding included: what the chips compute).
    log_every: the loop's logging interval; total_steps: its last step (also a log point).
  """

  def __init__(self, meter: Throughput, *, tokens_per_step: int, log_every: int, total_steps: int):
    self._meter = meter
    self._tokens_per_step = tokens_per_step
    self._log_every = log_every
    self._total_steps = total_steps
    self._last_step = 0

  def untimed(self, hook: Hook) -> Hook:
    """`hook`, its time left out of this hook's tokens/s and step time."""
    return UntimedHook(hook, self._meter)

  def begin(self, step: int, state) -> None:
    del state
    self._last_step = step

  def after_step(self, step: int, state) -> dict[str, float] | None:
    if step % self._log_every and step != self._total_steps:
      return None
    jax.block_until_ready(state)
    steps, self._last_step = step - self._last_step, step
    return self._meter.measure(steps, steps * self._tokens_per_step) or None


class UntimedHook(Hook):
  """Runs `hook` (e.g. a periodic held-out evaluation) with its time left out of `meter`'s training speed."""

  def __init__(self, hook: Hook, meter: Throughput):
    self._hook = hook
    self._meter = meter

  def begin(self, step: int, state):
    return self._meter.timed(lambda: self._hook.begin(step, state))

  def after_step(self, step: int, state):
    return self._meter.timed(lambda: self._hook.after_step(step, state))

  def reads_state(self, step: int) -> bool:
    return self._hook.reads_state(step)

  def on_log(self, step: int, scalars) -> None:
    self._hook.on_log(step, scalars)


class ProfileHook(Hook):
  """Runs a `ProfileWindow` from `train_loop`'s steps."""

  def __init__(self, window: ProfileWindow):
    self._window = window

  def after_step(self, step: int, state) -> None:
    if self._window.wants_sync(step):
      jax.block_until_ready(state)  # The traced steps' device work belongs in the trace.
    self._window.after_step(step)
