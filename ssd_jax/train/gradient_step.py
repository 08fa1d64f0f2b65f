"""Loss-agnostic pieces of a train step: micro-batch gradient accumulation and the optimizer update.

A loss here is `loss_fn(params, micro_batch) -> (loss_sum, count, metrics)` (the project's (sum, count)
convention, plus a dict of float32 scalars to log, e.g. MoE router statistics; `{}` when there are none).
Sums and gradient sums are added over micro-batches with a `lax.scan` and divided by the total count once,
so n micro-batches give the update of the whole batch at once (up to float summation order); logged
metrics are averaged over micro-batches. Any step (SFT cross-entropy, teacher divergences) builds on these
two functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ssd_jax.train.optimizer import Optimizer
from ssd_jax.train.train_state import TrainState

LossFn = Callable[[Any, Mapping[str, jax.Array]], tuple[jax.Array, jax.Array, dict[str, jax.Array]]]


def split_micro_batches(batch: Mapping[str, jax.Array], num_micro: int) -> dict[str, jax.Array]:
  """[B, ...] -> [num_micro, B / num_micro, ...]; micro-batch i holds rows i, i + n, i + 2n, ...

  Taking strided rows keeps each device's rows on that device when the batch axis is sharded.
  """

  def split(x):
    if x.shape[0] % num_micro:
      raise ValueError(f"batch size {x.shape[0]} is not divisible by {num_micro} micro-batches")
    return x.reshape(x.shape[0] // num_micro, num_micro, *x.shape[1:]).swapaxes(0, 1)

  return {key: split(value) for key, value in batch.items()}


def accumulate_loss_and_grads(
  loss_fn: LossFn,
  params: Any,
  batch: Mapping[str, jax.Array],
  *,
  num_micro: int,
  constrain_micro: Callable[[dict[str, jax.Array]], dict[str, jax.Array]] = lambda micro: micro,
) -> tuple[jax.Array, jax.Array, Any, dict[str, jax.Array]]:
  """Summed loss, count and float32 gradient sum of `loss_fn` over `num_micro` micro-batches.

  Args:
    loss_fn: `(params, batch) -> (loss_sum, count, metrics)`, differentiated w.r.t. params.
    params: parameter pytree.
    batch: arrays with a leading batch axis divisible by `num_micro`.
    num_micro: number of micro-batches (1: one pass over the whole batch, no scan).
    constrain_micro: applied to each micro-batch (e.g. a sharding constraint).

  Returns:
    (loss_sum, count, grad_sum, metrics): float32 scalars, a float32 pytree like `params`, and the loss's
    metrics averaged over the micro-batches.
  """

  def split_loss(p, micro):
    loss_sum, count, metrics = loss_fn(p, micro)
    return loss_sum, (count, metrics)

  grad_fn = jax.value_and_grad(split_loss, has_aux=True)

  def micro_step(carry, micro):
    loss_acc, count_acc, grad_acc = carry
    (loss_sum, (count, metrics)), grads = grad_fn(params, constrain_micro(micro))
    grad_acc = jax.tree.map(lambda acc, g: acc + g.astype(jnp.float32), grad_acc, grads)
    return (loss_acc + loss_sum, count_acc + count.astype(jnp.float32), grad_acc), metrics

  zero_grads = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  carry = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zero_grads)
  if num_micro == 1:
    carry, metrics = micro_step(carry, dict(batch))
  else:
    carry, per_micro = jax.lax.scan(micro_step, carry, split_micro_batches(batch, num_micro))
    metrics = jax.tree.map(lambda m: jnp.mean(m.astype(jnp.float32), axis=0), per_micro)
  return (*carry, metrics)


def apply_gradients(
  state: TrainState, optimizer: Optimizer, loss_sum: jax.Array, count: jax.Array, grad_sum: Any
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update from summed gradients; the loss is loss_sum / count.

  A batch with no counted tokens (e.g. on-policy rows that all lack a teacher context) leaves the
  parameters as they were: the optimizer state sees a zero gradient (its schedule and moments advance),
  but momentum and weight decay do not move weights that nothing taught.

  Returns:
    (new state, metrics) with metrics `loss`, `tokens` (count), `grad_norm` (before clipping),
    `param_norm` (of the updated parameters, in float32: an update that overflowed shows here, as loss and
    grad_norm are computed before it) and `learning_rate` (of this update).
  """
  denominator = jnp.maximum(count, 1.0)  # No counted tokens: zero loss and zero gradients.
  grads = jax.tree.map(lambda g, p: (g / denominator).astype(p.dtype), grad_sum, state.params)
  updates, opt_state = optimizer.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  params = jax.tree.map(lambda new, old: jnp.where(count > 0, new, old), params, state.params)
  metrics = {
    "loss": loss_sum / denominator,
    "tokens": count,
    "grad_norm": optax.tree.norm(grads),
    "param_norm": optax.tree.norm(jax.tree.map(lambda p: p.astype(jnp.float32), params)),
    "learning_rate": jnp.asarray(optimizer.schedule(state.step), jnp.float32),
  }
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics
