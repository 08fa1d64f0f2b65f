"""Orbax round trip of a sharded TrainState, iterator state and metadata; retention; restore_or_init."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from ssd_jax.train.checkpoint_resume import restore_or_init
from ssd_jax.train.checkpointing import Checkpointer
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.train_state import TrainState, abstract_train_state, init_train_state


class _Toy(nnx.Module):
  def __init__(self, rngs):
    self.proj = nnx.Linear(4, 8, rngs=rngs)
    self.norm = nnx.RMSNorm(8, rngs=rngs)


def _sharded_state(seed):
  mesh = jax.make_mesh((2, 4), ("data", "fsdp"), devices=jax.devices()[:8])
  _, params = nnx.split(_Toy(nnx.Rngs(seed)))
  params = jax.tree.map(
    lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec(None, "fsdp") if x.ndim == 2 else PartitionSpec())),
    params,
  )
  optimizer = make_optimizer(OptimizerConfig(1e-3, 1e-4, 1, 10))
  return init_train_state(params, optimizer)


def _assert_same_tree(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert x.sharding == y.sharding


def test_optimizer_moments_take_parameter_shardings():
  state = _sharded_state(0)
  mu = state.opt_state[1][0].mu
  assert mu["proj"]["kernel"].get_value().sharding.spec == PartitionSpec(None, "fsdp")
  assert state.step.sharding.spec == PartitionSpec()


def test_round_trip_restores_values_shardings_data_and_metadata(tmp_path):
  saved = _sharded_state(1).replace(step=jax.numpy.int32(7))
  saved = jax.device_put(saved, jax.tree.map(lambda x: x.sharding, _sharded_state(0)))
  with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=2) as checkpointer:
    assert checkpointer.save(7, saved, data_state={"next_index": 21}, metadata={"note": "x"})
    assert checkpointer.save(8, saved, data_state=b"\x00grain-bytes")
  with Checkpointer(tmp_path) as checkpointer:
    target = abstract_train_state(_sharded_state(0))
    latest = checkpointer.restore(target)
    assert latest.step == 8 and latest.data_state == b"\x00grain-bytes" and latest.metadata is None
    earlier = checkpointer.restore(target, step=7)
  assert isinstance(earlier.state, TrainState)
  assert earlier.data_state == {"next_index": 21} and earlier.metadata == {"note": "x"}
  assert int(earlier.state.step) == 7
  _assert_same_tree(earlier.state, saved)


def test_interval_and_max_to_keep(tmp_path):
  state = _sharded_state(0)
  with Checkpointer(tmp_path, save_interval_steps=2, max_to_keep=2) as checkpointer:
    written = [checkpointer.save(step, state) for step in range(1, 8)]
    checkpointer.wait_until_finished()
    assert written == [False, True, False, True, False, True, False]
    assert checkpointer.all_steps() == [4, 6]


def test_restore_or_init_without_checkpoint_returns_initial(tmp_path):
  state = _sharded_state(0)
  restored = restore_or_init(Checkpointer(tmp_path), state)
  assert restored.step == 0 and restored.state is state and restored.data_state is None
  assert restore_or_init(None, state).state is state


def test_restore_from_empty_directory_names_it(tmp_path):
  with Checkpointer(tmp_path) as checkpointer:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
      checkpointer.restore(abstract_train_state(_sharded_state(0)))
