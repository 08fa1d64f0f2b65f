"""The training loop: a run killed mid-way and resumed equals an uninterrupted run, bit for bit; hooks."""

import functools
import json

import jax
import numpy as np
import pytest
from train_fixtures import SeededBatches, copy_tree, tiny_model_state

from ssd_jax.train.checkpointing import Checkpointer
from ssd_jax.train.loop import Hook, IteratorSource, LoopConfig, train_loop
from ssd_jax.train.metrics import MetricsWriter
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.sft_step import make_sft_step
from ssd_jax.train.train_state import abstract_train_state, init_train_state

TOTAL = 6


@functools.cache
def _step():
  # A real AdamW with warm-up: moments and the step counter must survive the restart.
  optimizer = make_optimizer(
    OptimizerConfig(learning_rate=1e-2, end_learning_rate=1e-3, warmup_steps=2, total_steps=TOTAL)
  )
  return make_sft_step(tiny_model_state()[0], optimizer, chunk_size=32)


def _initial_state():
  return init_train_state(copy_tree(tiny_model_state()[1]), _step().optimizer)


def _config(directory, total=TOTAL, every=1):
  return LoopConfig(
    total_steps=total, checkpoint_dir=str(directory), checkpoint_every=every, max_to_keep=10, progress_bar=False
  )


def test_killed_and_resumed_run_is_bit_identical_to_uninterrupted(tmp_path):
  full_data = SeededBatches()
  with MetricsWriter(tmp_path / "logs", tensorboard=False, is_primary=True) as writer:
    full = train_loop(
      _step(),
      _initial_state(),
      IteratorSource(lambda: full_data),
      _config(tmp_path / "full"),
      metrics_writer=writer,
      metadata={"run": "full"},
    )
  assert full_data.served == list(range(TOTAL))

  crashing = SeededBatches(fail_at=3)
  with pytest.raises(RuntimeError, match="simulated crash"):
    train_loop(_step(), _initial_state(), IteratorSource(lambda: crashing), _config(tmp_path / "resumed"))
  assert crashing.served == [0, 1, 2]
  with Checkpointer(tmp_path / "resumed") as checkpointer:
    assert checkpointer.all_steps() == [1, 2, 3]

  resumed_data = SeededBatches()
  resumed = train_loop(_step(), _initial_state(), IteratorSource(lambda: resumed_data), _config(tmp_path / "resumed"))
  assert resumed_data.served == [3, 4, 5]  # Same data order: continues where the crash left off.

  assert int(resumed.step) == TOTAL
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(full), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  lines = [json.loads(line) for line in open(tmp_path / "logs" / "metrics.jsonl")]
  assert [line["step"] for line in lines] == list(range(1, TOTAL + 1))
  schedule = _step().optimizer.schedule
  np.testing.assert_allclose(
    [line["learning_rate"] for line in lines], [float(schedule(s)) for s in range(TOTAL)], rtol=1e-6
  )
  assert all(line["tokens"] > 0 and np.isfinite(line["loss"]) for line in lines)

  with Checkpointer(tmp_path / "full") as checkpointer:
    latest = checkpointer.restore(abstract_train_state(_initial_state()))
  assert latest.step == TOTAL and latest.data_state == {"index": TOTAL}
  assert latest.metadata == {"run": "full", "step": TOTAL}


def test_short_data_stops_early_and_saves_the_last_step(tmp_path):
  data = SeededBatches(limit=4)
  state = train_loop(_step(), _initial_state(), IteratorSource(lambda: data), _config(tmp_path, every=3))
  assert int(state.step) == 4
  with Checkpointer(tmp_path) as checkpointer:
    assert checkpointer.all_steps() == [3, 4]


def test_finished_run_does_not_train_again(tmp_path):
  train_loop(_step(), _initial_state(), IteratorSource(SeededBatches), _config(tmp_path, total=2, every=2))
  data = SeededBatches()
  state = train_loop(_step(), _initial_state(), IteratorSource(lambda: data), _config(tmp_path, total=2, every=2))
  assert int(state.step) == 2 and data.served == []


@pytest.mark.parametrize("field", ["total_steps", "checkpoint_every", "log_every", "max_to_keep"])
def test_loop_config_rejects_bad_values(field):
  kwargs = {"total_steps": 3, field: 0}
  with pytest.raises(ValueError, match=field):
    LoopConfig(**kwargs)


class _RecordingHook(Hook):
  def __init__(self):
    self.logged = []

  def begin(self, step, state):
    return {"eval/score": -1.0} if step == 0 else None

  def after_step(self, step, state):
    return {"eval/score": float(step)} if step % 2 == 0 else None

  def on_log(self, step, scalars):
    self.logged.append((step, scalars.get("eval/score")))


def test_hooks_add_scalars_at_their_steps(tmp_path):
  hook = _RecordingHook()
  with MetricsWriter(tmp_path / "logs", tensorboard=False, is_primary=True) as writer:
    train_loop(
      _step(),
      _initial_state(),
      IteratorSource(SeededBatches),
      LoopConfig(total_steps=4, log_every=2, progress_bar=False),
      hooks=(hook,),
      metrics_writer=writer,
    )
  lines = [json.loads(line) for line in open(tmp_path / "logs" / "metrics.jsonl")]
  assert [(line["step"], line.get("eval/score")) for line in lines] == [
    (0, -1.0),
    (1, None),
    (2, 2.0),
    (3, None),
    (4, 4.0),
  ]
  assert "loss" not in lines[0] and all("loss" in line for line in lines[1:])
  assert hook.logged == [(2, 2.0), (4, 4.0)]
