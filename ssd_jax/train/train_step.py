"""One jitted train step for every method: a loss on a batch, micro-batch accumulation, one optimizer update.

A method supplies `loss_fn(params, batch, aux) -> (loss_sum, count, metrics)` (the project's (sum, count)
convention, plus scalars to log: `{}` or, for an MoE model, `train.router_loss.router_metrics`) and the names
of its batch arrays; `TrainStep` does the rest the same way for all of them: micro-batches via
`gradient_step.accumulate_loss_and_grads`, the update via `gradient_step.apply_gradients`, batch arrays
sharded as ('batch', 'length'), the state donated and kept in its shardings. `aux` is an extra jit argument
the loss may read (the teacher's parameters in self-distillation; None when unused).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssd_jax import sharding as sharding_lib
from ssd_jax.train.gradient_step import accumulate_loss_and_grads, apply_gradients
from ssd_jax.train.optimizer import Optimizer
from ssd_jax.train.train_state import TrainState, state_shardings

BATCH_AXES = ("batch", "length")

Batch = Mapping[str, Any]
LossFn = Callable[[Any, Mapping[str, jax.Array], Any], tuple[jax.Array, jax.Array, dict[str, jax.Array]]]


def require_batch_arrays(batch: Batch, keys: Sequence[str], what: str, grad_accum_steps: int = 1) -> dict[str, Any]:
  """The arrays `keys` of `batch`, each [batch, length] with one batch size divisible by `grad_accum_steps`.

  Raises:
    KeyError: naming the missing arrays.
    ValueError: naming the shapes that disagree.
  """
  missing = [key for key in keys if key not in batch]
  if missing:
    raise KeyError(f"{what} batch is missing {missing}; it needs {list(keys)}, got {sorted(batch)}")
  arrays = {key: batch[key] for key in keys}
  shapes = {key: tuple(np.shape(value)) for key, value in arrays.items()}
  if any(len(s) != 2 for s in shapes.values()) or len({s[0] for s in shapes.values()}) != 1:
    raise ValueError(f"{what} batch arrays must be [batch, length] with one batch size, got {shapes}")
  batch_size = next(iter(shapes.values()))[0]
  if batch_size % grad_accum_steps:
    raise ValueError(f"batch size {batch_size} is not divisible by grad_accum_steps={grad_accum_steps}")
  return arrays


def _constrain_micro(micro: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Keeps each micro-batch sharded over ('batch', 'length'); a no-op outside `use_rules`."""
  return {key: sharding_lib.constrain(value, BATCH_AXES) for key, value in micro.items()}


class TrainStep:
  """Callable `step(state, batch, aux=None) -> (state, metrics)`; the state argument is donated.

  Without a mesh the step is a plain `jax.jit`. With a mesh, the state keeps the shardings it was placed
  with, `aux` those of its own leaves, and every batch array is sharded as ('batch', 'length') per the rules.

  Args:
    loss_fn: `(params, micro_batch, aux) -> (loss_sum, count, metrics)`, differentiated w.r.t. params;
      `metrics` (float32 scalars) join the step's metrics, averaged over micro-batches.
    optimizer: the optimizer bundle (its `grad_accum_steps` sets the micro-batches).
    batch_keys: the arrays a batch must hold.
    check_batch: extra shape checks of a host batch (raise ValueError naming the problem).
    what: names the batch in errors ('SFT', 'distillation').
    mesh, rules: the mesh and logical-axis rules; None runs unsharded.
  """

  def __init__(
    self,
    loss_fn: LossFn,
    optimizer: Optimizer,
    *,
    batch_keys: Sequence[str],
    check_batch: Callable[[dict[str, Any]], None] | None = None,
    what: str = "train",
    mesh: jax.sharding.Mesh | None = None,
    rules: sharding_lib.LogicalRules | None = None,
  ):
    self.loss_fn = loss_fn
    self.optimizer = optimizer
    self.batch_keys = tuple(batch_keys)
    self._check = check_batch
    self._what = what
    self.mesh = mesh
    self.rules = sharding_lib.DEFAULT_RULES if rules is None else rules
    self._jitted: dict[bool, Any] = {}

  def _body(self, state: TrainState, batch: Batch, aux: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    rules = contextlib.nullcontext() if self.mesh is None else sharding_lib.use_rules(self.mesh, self.rules)
    with rules:
      loss_sum, count, grad_sum, loss_metrics = accumulate_loss_and_grads(
        lambda params, micro: self.loss_fn(params, micro, aux),
        state.params,
        batch,
        num_micro=self.optimizer.grad_accum_steps,
        constrain_micro=_constrain_micro,
      )
      state, metrics = apply_gradients(state, self.optimizer, loss_sum, count, grad_sum)
      return state, {**loss_metrics, **metrics}

  def jit_for(self, state: TrainState, aux: Any = None):
    """The jitted function for states (and `aux`) sharded like these; placed or abstract (for `.lower`)."""
    key = aux is None
    if key not in self._jitted:
      if self.mesh is None:
        self._jitted[key] = jax.jit(self._body, donate_argnums=0)
      else:
        shardings = state_shardings(state)
        batch_sharding = jax.sharding.NamedSharding(self.mesh, sharding_lib.logical_to_spec(BATCH_AXES, self.rules))
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        aux_shardings = None if aux is None else jax.tree.map(lambda x: x.sharding, aux)
        self._jitted[key] = jax.jit(
          self._body,
          in_shardings=(shardings, {k: batch_sharding for k in self.batch_keys}, aux_shardings),
          out_shardings=(shardings, replicated),
          donate_argnums=0,
        )
    return self._jitted[key]

  def checked(self, batch: Batch, grad_accum_steps: int = 1) -> dict[str, Any]:
    arrays = require_batch_arrays(batch, self.batch_keys, self._what, grad_accum_steps)
    if self._check is not None:
      self._check(arrays)
    return arrays

  def place_batch(self, batch: Batch) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays on the mesh (each process passes only its rows)."""
    arrays = self.checked(batch)
    if self.mesh is None:
      return {key: jnp.asarray(value) for key, value in arrays.items()}
    return sharding_lib.shard_batch(arrays, self.mesh, BATCH_AXES, self.rules)

  def __call__(self, state: TrainState, batch: Batch, aux: Any = None) -> tuple[TrainState, dict[str, jax.Array]]:
    arrays = self.checked(batch, self.optimizer.grad_accum_steps)
    return self.jit_for(state, aux)(state, arrays, aux)
