"""The jitted SFT step: masked mean cross-entropy over response tokens, one AdamW update per call.

With `grad_accum_steps = n` the global batch is split into n micro-batches inside the step
(`gradient_step.accumulate_loss_and_grads`), so the update equals the whole-batch one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssd_jax import sharding as sharding_lib
from ssd_jax.model.router_stats import capture_router_stats
from ssd_jax.train.cross_entropy import chunked_cross_entropy
from ssd_jax.train.gradient_step import (
  accumulate_loss_and_grads,
  apply_gradients,
  split_micro_batches,  # noqa: F401  (imported from here by other steps)
)
from ssd_jax.train.optimizer import Optimizer
from ssd_jax.train.router_loss import router_loss_sum
from ssd_jax.train.train_state import TrainState, state_shardings

BATCH_KEYS = ("tokens", "targets", "loss_mask", "segment_ids", "positions")
BATCH_AXES = ("batch", "length")

Batch = Mapping[str, Any]


def check_batch(batch: Batch, grad_accum_steps: int) -> dict[str, Any]:
  """The five SFT arrays of `batch`, checked to be [batch, length] and splittable into micro-batches."""
  missing = [key for key in BATCH_KEYS if key not in batch]
  if missing:
    raise KeyError(f"SFT batch is missing {missing}; it needs {list(BATCH_KEYS)}, got {sorted(batch)}")
  arrays = {key: batch[key] for key in BATCH_KEYS}
  shapes = {key: tuple(np.shape(value)) for key, value in arrays.items()}
  if len(set(shapes.values())) != 1 or len(shapes["tokens"]) != 2:
    raise ValueError(f"SFT batch arrays must all be [batch, length], got shapes {shapes}")
  batch_size = shapes["tokens"][0]
  if batch_size % grad_accum_steps:
    raise ValueError(f"global batch size {batch_size} is not divisible by grad_accum_steps={grad_accum_steps}")
  return arrays


def sft_loss(params: Any, graphdef: nnx.GraphDef, batch: Batch, *, chunk_size: int) -> tuple[jax.Array, jax.Array]:
  """Summed token cross-entropy over `loss_mask` and the number of tokens it covers.

  Args:
    params: the model state (second half of `nnx.split(model)`).
    graphdef: the model graph definition.
    batch: int [B, L] arrays `tokens`, `targets`, `loss_mask`, `segment_ids`, `positions`.
    chunk_size: sequence chunk for the cross-entropy, so [B, L, V] float32 logits never exist at once.

  Returns:
    (loss_sum, count): float32 scalars; loss_sum includes an MoE model's router load-balancing term.
  """
  model = nnx.merge(graphdef, params)
  with capture_router_stats() as captured:
    hidden, _ = model.hidden(batch["tokens"], batch["positions"], segment_ids=batch["segment_ids"])
  loss_sum, count = chunked_cross_entropy(
    hidden, model.unembedding_matrix(), batch["targets"], batch["loss_mask"], chunk_size=chunk_size
  )
  return loss_sum + router_loss_sum(captured.total(), model.cfg.router_aux_loss_coef, count), count


def _constrain_micro(micro: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Keeps each micro-batch sharded over ('batch', 'length'); a no-op outside `use_rules`."""
  return {key: sharding_lib.constrain(value, BATCH_AXES) for key, value in micro.items()}


def sft_train_step(
  state: TrainState, batch: Batch, *, graphdef: nnx.GraphDef, optimizer: Optimizer, chunk_size: int
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SFT update (not jitted): accumulate over `optimizer.grad_accum_steps` micro-batches, apply."""
  loss_sum, count, grad_sum = accumulate_loss_and_grads(
    lambda params, micro: sft_loss(params, graphdef, micro, chunk_size=chunk_size),
    state.params,
    batch,
    num_micro=optimizer.grad_accum_steps,
    constrain_micro=_constrain_micro,
  )
  return apply_gradients(state, optimizer, loss_sum, count, grad_sum)


class SftStep:
  """Callable `step(state, batch) -> (state, metrics)`; the state argument is donated.

  Without a mesh the step is a plain `jax.jit`. With a mesh, the first call fixes the in/out shardings:
  the state keeps the shardings it was placed with (parameters per the rules, moments like their
  parameters) and the batch is sharded as ('batch', 'length') per the rules.
  """

  def __init__(
    self,
    graphdef: nnx.GraphDef,
    optimizer: Optimizer,
    *,
    chunk_size: int,
    mesh: jax.sharding.Mesh | None = None,
    rules: sharding_lib.LogicalRules | None = None,
  ):
    if chunk_size < 1:
      raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    self.graphdef = graphdef
    self.optimizer = optimizer
    self.chunk_size = chunk_size
    self.mesh = mesh
    self.rules = sharding_lib.DEFAULT_RULES if rules is None else rules
    self._jitted = None

  def _body(self, state: TrainState, batch: Batch):
    rules = contextlib.nullcontext() if self.mesh is None else sharding_lib.use_rules(self.mesh, self.rules)
    with rules:
      return sft_train_step(state, batch, graphdef=self.graphdef, optimizer=self.optimizer, chunk_size=self.chunk_size)

  def jit_for(self, state: TrainState):
    """The jitted function, built on first use for states sharded like `state`.

    `state` may be placed or abstract (ShapeDtypeStructs with shardings), so
    `step.jit_for(abstract).lower(abstract, batch_specs)` compiles ahead of time.
    """
    if self._jitted is None:
      if self.mesh is None:
        self._jitted = jax.jit(self._body, donate_argnums=0)
      else:
        shardings = state_shardings(state)
        batch_sharding = jax.sharding.NamedSharding(self.mesh, sharding_lib.logical_to_spec(BATCH_AXES, self.rules))
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self._jitted = jax.jit(
          self._body,
          in_shardings=(shardings, {key: batch_sharding for key in BATCH_KEYS}),
          out_shardings=(shardings, replicated),
          donate_argnums=0,
        )
    return self._jitted

  def place_batch(self, batch: Batch) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays on the mesh (each process passes only its rows)."""
    arrays = check_batch(batch, 1)
    if self.mesh is None:
      return {key: jnp.asarray(value) for key, value in arrays.items()}
    return sharding_lib.shard_batch(arrays, self.mesh, BATCH_AXES, self.rules)

  def __call__(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    arrays = check_batch(batch, self.optimizer.grad_accum_steps)
    return self.jit_for(state)(state, arrays)


def make_sft_step(
  graphdef: nnx.GraphDef,
  optimizer: Optimizer,
  *,
  chunk_size: int,
  mesh: jax.sharding.Mesh | None = None,
  rules: sharding_lib.LogicalRules | None = None,
) -> SftStep:
  """Builds the SFT train step; see `SftStep`."""
  return SftStep(graphdef, optimizer, chunk_size=chunk_size, mesh=mesh, rules=rules)
