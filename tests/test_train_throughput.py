"""Model FLOPs per token by hand, tokens/s / step time / MFU with a fake clock, and the profiler window."""

import json
import os
import typing

import jax
import jax.numpy as jnp
import pytest

from ssd_jax.model import ModelConfig
from ssd_jax.train import throughput
from ssd_jax.train.loop import LoopConfig, train_loop
from ssd_jax.train.metrics import MetricsWriter


def _cfg(**changes):
  base = dict(
    vocab_size=100, hidden_size=8, intermediate_size=16, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4
  )
  return ModelConfig(**{**base, **changes})


def test_flops_per_token_by_hand():
  cfg = _cfg()
  # Per block: q,o 8x8 each; k,v 8x4 each; mlp 3 x 8x16; norms 2x8 + 2x4 (counted as params, as num_params does).
  block = 8 * 8 * 2 + 8 * 4 * 2 + 3 * 8 * 16 + 2 * 8 + 2 * 4
  matmul = 2 * block + 8 + 100 * 8  # Blocks, final norm, unembedding (not the lookup table).
  attention = 6 * 2 * 2 * 4 * 32
  assert throughput.train_flops_per_token(cfg, 32) == 6 * matmul + attention
  assert throughput.forward_flops_per_token(cfg, 32) == 2 * matmul + attention / 3  # A teacher's forward.
  tied = _cfg(tie_embeddings=True)
  assert throughput.train_flops_per_token(tied, 32) == 6 * matmul + attention  # Same matmuls when tied.


def test_throughput_skips_the_compile_interval_then_reports():
  now = [0.0]
  meter = throughput.Throughput(flops_per_token=1e9, peak=4e12, clock=lambda: now[0])
  now[0] = 30.0
  assert meter.measure(steps=1, tokens=1000) == {}  # Includes compilation.
  now[0] = 32.0
  got = meter.measure(steps=4, tokens=8000)
  assert got["tokens_per_s"] == 4000 and got["step_time_s"] == 0.5
  assert got["mfu"] == pytest.approx(4000 * 1e9 / 4e12)
  assert "mfu" not in throughput.Throughput(1e9, None, clock=lambda: now[0]).measure(1, 1)


def test_peak_flops_of_known_and_unknown_devices():
  class Dev:
    def __init__(self, kind):
      self.device_kind = kind

  assert throughput.peak_flops([Dev("TPU v5"), Dev("TPU v5")]) == 2 * 459e12
  assert throughput.peak_flops([Dev("cpu")]) is None


@pytest.mark.parametrize("text, expected", [("", None), ("3,5", (3, 5))])
def test_parse_profile_steps(text, expected):
  assert throughput.parse_profile_steps(text) == expected


@pytest.mark.parametrize("text", ["3", "5,3", "a,b", "-1,2"])
def test_parse_profile_steps_rejects(text):
  with pytest.raises(ValueError, match="profile_steps"):
    throughput.parse_profile_steps(text)


def test_profile_window_traces_the_chosen_steps(tmp_path):
  calls = []
  window = throughput.ProfileWindow(
    (2, 4),
    str(tmp_path / "p"),
    start_trace=lambda d: calls.append(("start", d)),
    stop_trace=lambda: calls.append("stop"),
  )
  for step in range(1, 7):
    window.after_step(step)
  window.close()
  assert calls == [("start", str(tmp_path / "p")), "stop"]


def test_profile_window_writes_a_real_trace(tmp_path):
  window = throughput.ProfileWindow((0, 1), str(tmp_path))
  window.after_step(0)
  jax.block_until_ready(jnp.arange(8.0).sum())
  window.after_step(1)
  assert any(name.endswith(".xplane.pb") for _, _, files in os.walk(tmp_path) for name in files)


class _State(typing.NamedTuple):
  step: jax.Array
  total: jax.Array


class _Counting:
  """A batch source of constant batches (stateless)."""

  def next_batch(self, step, state):
    return jnp.ones(()), {}

  def get_state(self):
    return None

  def set_state(self, state):
    del state


def test_hooks_in_the_train_loop_log_speed_at_log_points_and_trace(tmp_path):
  now = [0.0]

  def clock():
    now[0] += 0.25  # Every reading is a quarter second after the last.
    return now[0]

  meter = throughput.Throughput(flops_per_token=10.0, peak=1000.0, clock=clock)
  speed = throughput.SpeedHook(meter, tokens_per_step=4, log_every=2, total_steps=5)
  profile = throughput.ProfileHook(throughput.ProfileWindow((1, 3), str(tmp_path / "profile")))
  step_fn = jax.jit(lambda s, batch: (_State(s.step + 1, s.total + batch), {"loss": s.total, "tokens": batch}))
  with MetricsWriter(tmp_path / "logs", tensorboard=False) as writer:
    train_loop(
      step_fn,
      _State(jnp.zeros((), jnp.int32), jnp.zeros(())),
      _Counting(),
      LoopConfig(total_steps=5, progress_bar=False, log_every=2),
      hooks=(speed, profile),
      metrics_writer=writer,
    )
  records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
  with_speed = {r["step"]: r for r in records if "tokens_per_s" in r}
  assert sorted(with_speed) == [4, 5]  # Step 2 only started the clock; 5 is the last step.
  assert with_speed[4]["step_time_s"] == 0.125 and with_speed[4]["tokens_per_s"] == 32.0
  assert with_speed[4]["mfu"] == pytest.approx(32.0 * 10.0 / 1000.0)
  assert with_speed[5]["step_time_s"] == 0.25
  assert any(name.endswith(".xplane.pb") for _, _, files in os.walk(tmp_path / "profile") for name in files)


def test_untimed_hook_time_is_left_out_of_the_speed():
  """A held-out evaluation after some steps must not read as slow training."""

  class Evaluation(throughput.Hook):
    def after_step(self, step, state):
      del state
      now[0] += 10.0  # ten seconds of evaluation after every step
      return {"eval_step": step}

  def step_times(wrap):
    meter = throughput.Throughput(flops_per_token=1.0, peak=None, clock=lambda: now[0])
    speed = throughput.SpeedHook(meter, tokens_per_step=4, log_every=2, total_steps=4)
    evaluation = speed.untimed(Evaluation()) if wrap else Evaluation()
    state = jnp.zeros(())
    speed.begin(0, state)
    logged = {}
    for step in range(1, 5):
      now[0] += 1.0  # one second of training per step
      logged.update(speed.after_step(step, state) or {})
      assert evaluation.after_step(step, state) == {"eval_step": step}
    return logged["step_time_s"]

  now = [0.0]
  assert step_times(wrap=True) == 1.0
  assert step_times(wrap=False) == 11.0  # what the log said before
