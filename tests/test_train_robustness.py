"""Training never keeps or publishes a broken state: non-finite guard, checkpoint fallback, save failures."""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest
from train_fixtures import SeededBatches, copy_tree, tiny_config, tiny_model_state

from ssd_jax import sharding
from ssd_jax.model import hf
from ssd_jax.pipeline import model_io, runner
from ssd_jax.train import checkpointing
from ssd_jax.train.checkpoint_resume import CheckpointError, restore_or_init
from ssd_jax.train.checkpointing import Checkpointer, CheckpointSaveError
from ssd_jax.train.loop import Hook, IteratorSource, LoopConfig, NonFiniteError, train_loop
from ssd_jax.train.metrics import MetricsWriter
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.sft_step import make_sft_step
from ssd_jax.train.train_state import init_train_state


@functools.cache
def _step():
  optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-2, end_learning_rate=1e-3, warmup_steps=1, total_steps=6))
  return make_sft_step(tiny_model_state()[0], optimizer, chunk_size=32)


def _state():
  return init_train_state(copy_tree(tiny_model_state()[1]), _step().optimizer)


def _config(directory, total=6, every=1, log_every=1):
  return LoopConfig(
    total_steps=total, checkpoint_dir=str(directory), checkpoint_every=every, log_every=log_every, progress_bar=False
  )


def _nan_from(step_number):
  """The SFT step, but its loss is NaN from optimizer step `step_number` on (as a diverging run's)."""
  calls = []

  def step(state, batch):
    calls.append(1)
    state, metrics = _step()(state, batch)
    if len(calls) >= step_number:
      metrics = {**metrics, "loss": jnp.float32(jnp.nan)}
    return state, metrics

  return step


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  with pytest.raises(NonFiniteError, match="step 3: non-finite loss"):
    train_loop(_nan_from(3), _state(), IteratorSource(SeededBatches), _config(tmp_path / "ckpt", log_every=2))
  with Checkpointer(tmp_path / "ckpt") as checkpointer:
    assert checkpointer.all_steps() == [1, 2]  # Nothing of step 3 or later was saved.


def test_an_update_that_overflows_the_parameters_stops_at_that_step(tmp_path):
  # Loss and gradient norm come from the parameters before the update, so both are finite at step 1; the
  # parameters after it are ~3e38 (their norm overflows). Nothing of step 1 may be checkpointed.
  optimizer = make_optimizer(OptimizerConfig(learning_rate=3e38, end_learning_rate=3e38, warmup_steps=0, total_steps=6))
  step = make_sft_step(tiny_model_state()[0], optimizer, chunk_size=32)
  state = init_train_state(copy_tree(tiny_model_state()[1]), optimizer)
  with pytest.raises(NonFiniteError, match="step 1: non-finite param_norm = inf"):
    train_loop(step, state, IteratorSource(SeededBatches), _config(tmp_path / "ckpt"))
  with Checkpointer(tmp_path / "ckpt") as checkpointer:
    assert checkpointer.all_steps() == []


class _Seen(Hook):
  """Records the steps whose state reached it; it reads the state (as an evaluation does) at every step."""

  def __init__(self):
    self.steps = []

  def reads_state(self, step):
    return True

  def after_step(self, step, state):
    self.steps.append(step)


def test_a_non_finite_step_never_reaches_a_hook_that_reads_the_state(tmp_path):
  hook = _Seen()
  with pytest.raises(NonFiniteError, match="step 3: non-finite loss"):
    train_loop(
      _nan_from(3),
      _state(),
      IteratorSource(SeededBatches),
      _config(tmp_path / "ckpt", every=4, log_every=4),
      hooks=(hook,),
    )
  assert hook.steps == [1, 2]


class _ReadingSource(IteratorSource):
  """Batches that, like on-policy rollouts, are computed from the state: records the steps that read it."""

  def __init__(self):
    super().__init__(SeededBatches)
    self.read = []

  def reads_state(self, step):
    return True

  def next_batch(self, step, state):
    self.read.append(step)
    return super().next_batch(step, state)


def test_a_non_finite_step_never_reaches_a_source_that_reads_the_state(tmp_path):
  source = _ReadingSource()
  with pytest.raises(NonFiniteError, match="step 3: non-finite loss"):
    train_loop(_nan_from(3), _state(), source, _config(tmp_path / "ckpt", every=4, log_every=4))
  assert source.read == [0, 1, 2]


def test_export_refuses_non_finite_parameters(tmp_path):
  params = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), copy_tree(tiny_model_state()[1]))
  with pytest.raises(model_io.NonFiniteModelError, match="non-finite"):
    model_io.export_hf(params, tiny_config(), str(tmp_path / "model"), str(tmp_path))
  assert not os.path.exists(tmp_path / "model")


def test_a_model_with_non_finite_weights_is_refused_at_load_naming_the_tensor(tmp_path):
  graphdef, params = tiny_model_state()
  broken = copy_tree(params)
  scale = broken["layers"][0]["input_norm"]["scale"]
  scale.set_value(scale.get_value().at[3].set(jnp.inf))
  hf.save_hf(broken, tiny_config(), str(tmp_path))
  mesh = sharding.make_mesh({"fsdp": 8})
  with pytest.raises(model_io.NonFiniteModelError, match=r"holds non-finite values in .*input_norm.*scale"):
    model_io.load_split(str(tmp_path), mesh, sharding.DEFAULT_RULES, tiny_config())
  hf.save_hf(params, tiny_config(), str(tmp_path))
  model_io.load_split(str(tmp_path), mesh, sharding.DEFAULT_RULES, tiny_config())


def _three_checkpoints(directory):
  train_loop(_step(), _state(), IteratorSource(SeededBatches), _config(directory, total=3))


@pytest.mark.parametrize(
  "damage",
  [
    lambda step_dir: (
      os.remove(step_dir / "_METADATA") if (step_dir / "_METADATA").exists() else shutil.rmtree(step_dir / "state")
    ),
    lambda step_dir: [os.remove(p) for p in (step_dir / "data").glob("process_*.json")],
    lambda step_dir: shutil.rmtree(step_dir / "data"),
    lambda step_dir: [
      p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
      for p in (step_dir / "state").rglob("*")
      if p.is_file() and p.stat().st_size > 1000
    ],
  ],
  ids=["metadata_missing", "iterator_state_missing", "iterator_item_missing", "data_truncated"],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, damage):
  _three_checkpoints(tmp_path / "ckpt")
  damage(tmp_path / "ckpt" / "3")
  with Checkpointer(tmp_path / "ckpt") as checkpointer:
    restored = restore_or_init(checkpointer, _state(), with_data=True)
    assert restored.step == 2 and restored.data_state == {"index": 2}
    assert checkpointer.all_steps() == [1, 2]
  out = capsys.readouterr().out
  assert "step 3 does not restore" in out and "resuming from step 2" in out
  assert (tmp_path / "ckpt.broken" / "3").exists()  # Set aside, not deleted.
  # Training continues from step 2 and saves step 3 anew.
  state = train_loop(_step(), _state(), IteratorSource(SeededBatches), _config(tmp_path / "ckpt", total=3))
  assert int(state.step) == 3


def test_a_checkpoint_without_its_data_item_resumes_the_data_from_the_previous_one(tmp_path, capsys):
  _three_checkpoints(tmp_path / "ckpt")
  shutil.rmtree(tmp_path / "ckpt" / "3" / "data")
  data = SeededBatches()
  train_loop(_step(), _state(), IteratorSource(lambda: data), _config(tmp_path / "ckpt", total=4))
  assert data.served == [2, 3]  # Steps 3 and 4 trained on the batches after step 2's, not from the first.
  assert "step 3 does not restore (FileNotFoundError" in capsys.readouterr().out


def test_non_finite_checkpoint_is_skipped_and_none_intact_is_an_error(tmp_path, capsys):
  state = _state()
  poisoned = state.replace(params=jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), state.params))
  with Checkpointer(tmp_path, async_save=False) as checkpointer:
    checkpointer.save(1, _state(), force=True)
    checkpointer.save(2, poisoned, force=True)
  with Checkpointer(tmp_path) as checkpointer:
    assert restore_or_init(checkpointer, _state()).step == 1
  assert "step 2 holds non-finite values" in capsys.readouterr().out
  with Checkpointer(tmp_path, async_save=False) as checkpointer:
    checkpointer.save(2, poisoned, force=True)
    shutil.rmtree(tmp_path / "1")
    checkpointer._manager.reload()  # pylint: disable=protected-access
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
      restore_or_init(checkpointer, _state())


def test_resumed_metrics_hold_each_step_once(tmp_path):
  logs = tmp_path / "logs"
  with MetricsWriter(logs, is_primary=True) as writer, pytest.raises(RuntimeError, match="simulated crash"):
    train_loop(
      _step(),
      _state(),
      IteratorSource(lambda: SeededBatches(fail_at=5)),
      _config(tmp_path / "ckpt", every=3),
      metrics_writer=writer,
    )
  assert [json.loads(line)["step"] for line in open(logs / "metrics.jsonl")] == [1, 2, 3, 4, 5]
  with MetricsWriter(logs, is_primary=True) as writer:
    train_loop(
      _step(), _state(), IteratorSource(SeededBatches), _config(tmp_path / "ckpt", every=3), metrics_writer=writer
    )
  assert [json.loads(line)["step"] for line in open(logs / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_a_save_that_fails_on_the_file_system_is_one_named_error(tmp_path, monkeypatch):
  # Orbax reports a full disk as its own error raised from the OSError: the run ends on one line naming both.
  real = ocp.CheckpointManager.check_for_errors

  def failing(self):
    real(self)
    if self.latest_step() == 2:
      try:
        raise OSError(28, "No space left on device")
      except OSError as e:
        raise ValueError("commit failed") from e

  monkeypatch.setattr(ocp.CheckpointManager, "check_for_errors", failing)
  message = f"saving a checkpoint in {tmp_path / 'ckpt'} failed: .*No space left on device"
  with pytest.raises(CheckpointSaveError, match=message):
    train_loop(_step(), _state(), IteratorSource(SeededBatches), _config(tmp_path / "ckpt", every=2))
  assert CheckpointSaveError in runner.RunError


def test_a_failed_save_stops_training_at_that_step(tmp_path, monkeypatch):
  real = checkpointing.Checkpointer.check_for_errors
  data = SeededBatches()

  def failing(self):
    real(self)
    if self.latest_step() == 2:
      raise OSError(28, "No space left on device")

  monkeypatch.setattr(checkpointing.Checkpointer, "check_for_errors", failing)
  with pytest.raises(OSError, match="No space left"):
    train_loop(_step(), _state(), IteratorSource(lambda: data), _config(tmp_path / "ckpt", every=2))
  assert data.served == [0, 1]  # Nothing trained past the step whose save failed.
