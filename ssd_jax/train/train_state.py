"""TrainState: step, parameters and optimizer state, sharded like the parameters.

The parameters are the `nnx.State` half of `nnx.split(model)`; the graph definition stays outside the state
so that the state is a plain pytree (jit argument, Orbax item). Optimizer moments take the shardings of the
parameters they track; counters and other non-parameter leaves are replicated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from ssd_jax.train.optimizer import Optimizer


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
  """Everything a training run checkpoints and updates.

  Attributes:
    step: int32 scalar, number of optimizer updates applied so far.
    params: parameter pytree (an `nnx.State` of `nnx.Param`).
    opt_state: the optax state for `params`.
  """

  step: jax.Array
  params: Any
  opt_state: Any

  def replace(self, **changes) -> TrainState:
    return dataclasses.replace(self, **changes)


def _replicated_like(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
  """A sharding on the same devices that replicates the whole array."""
  if isinstance(sharding, NamedSharding):
    return NamedSharding(sharding.mesh, PartitionSpec())
  if len(sharding.device_set) == 1:
    return sharding
  raise ValueError(
    f"Cannot derive a replicated sharding from {sharding!r}; place parameters with a NamedSharding "
    "(ssd_jax.sharding.shard_state) or on one device."
  )


def _first_sharding(params: Any) -> jax.sharding.Sharding:
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError("params has no array leaves")
  sharding = getattr(leaves[0], "sharding", None)
  if sharding is None:
    raise ValueError(f"params leaves must be jax.Array or ShapeDtypeStruct with a sharding, got {type(leaves[0])}")
  return sharding


def opt_state_shardings(optimizer: Optimizer, params: Any) -> Any:
  """Shardings for `optimizer.tx.init(params)`: moments like their params, the rest replicated.

  Args:
    optimizer: the optimizer bundle.
    params: placed parameters (jax.Array leaves) or ShapeDtypeStructs carrying shardings.
  """
  replicated = _replicated_like(_first_sharding(params))
  param_shardings = jax.tree.map(lambda x: x.sharding, params)
  abstract = jax.eval_shape(optimizer.tx.init, params)
  return optax.tree_map_params(
    optimizer.tx,
    lambda _, sharding: sharding,
    abstract,
    param_shardings,
    transform_non_params=lambda _: replicated,
  )


def train_state_shardings(optimizer: Optimizer, params: Any) -> TrainState:
  """The sharding of every leaf of the TrainState built from `params`."""
  replicated = _replicated_like(_first_sharding(params))
  return TrainState(
    step=replicated,
    params=jax.tree.map(lambda x: x.sharding, params),
    opt_state=opt_state_shardings(optimizer, params),
  )


def init_train_state(params: Any, optimizer: Optimizer) -> TrainState:
  """Step 0 state for already-placed `params`; optimizer state is created directly in its shardings.

  Every leaf comes out committed to its sharding, like the train step's outputs, so the step compiles
  once rather than again on its second call.
  """
  shardings = train_state_shardings(optimizer, params)
  params = jax.device_put(params, shardings.params)
  opt_state = jax.jit(optimizer.tx.init, out_shardings=shardings.opt_state)(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
  return TrainState(step=step, params=params, opt_state=opt_state)


def abstract_train_state(state: TrainState) -> TrainState:
  """ShapeDtypeStructs with shardings, the target Orbax restores into (each host reads only its shards)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def state_shardings(state: TrainState) -> TrainState:
  """The sharding of each leaf of a placed (or abstract) state."""
  return jax.tree.map(lambda x: x.sharding, state)
