"""The jitted teacher-student step: student and teacher forwards, divergence on response tokens, one update.

The student runs on `student_*` arrays and the teacher on `teacher_*` arrays (see `distill_batch`);
both are cut to the hidden states that predict the shared response tokens and handed to
`distillation_loss`. The teacher's parameters are either a second parameter set (frozen initial or EMA
teacher) or, for a 'live' teacher, the student's own parameters; both are under
`jax.lax.stop_gradient`, so only the student is updated. With `grad_accum_steps = n` the batch is split
into n micro-batches whose (sum, count) and gradient sums are added before one update.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ssd_jax import sharding as sharding_lib
from ssd_jax.model.router_stats import capture_router_stats
from ssd_jax.train.distill_batch import BATCH_KEYS, response_block
from ssd_jax.train.distillation_loss import DivergenceConfig, distillation_loss
from ssd_jax.train.optimizer import Optimizer
from ssd_jax.train.router_loss import router_loss_sum
from ssd_jax.train.sft_step import split_micro_batches
from ssd_jax.train.train_state import TrainState, state_shardings

BATCH_AXES = ("batch", "length")

Batch = Mapping[str, Any]


def check_distill_batch(batch: Batch, grad_accum_steps: int) -> dict[str, Any]:
  """The arrays of `BATCH_KEYS`, checked for shape agreement and micro-batch divisibility."""
  missing = [key for key in BATCH_KEYS if key not in batch]
  if missing:
    raise KeyError(f"distillation batch is missing {missing}; it needs {list(BATCH_KEYS)}")
  arrays = {key: batch[key] for key in BATCH_KEYS}
  shapes = {key: tuple(np.shape(v)) for key, v in arrays.items()}
  if any(len(s) != 2 for s in shapes.values()) or len({s[0] for s in shapes.values()}) != 1:
    raise ValueError(f"distillation batch arrays must be [batch, length] with one batch size, got {shapes}")
  for prefix in ("student", "teacher", "response"):
    widths = {shapes[k][1] for k in BATCH_KEYS if k.startswith(prefix)}
    if len(widths) != 1:
      raise ValueError(f"{prefix}_* arrays must share one length, got {shapes}")
  response_width = shapes["response_tokens"][1]
  for prefix in ("student", "teacher"):
    if shapes[f"{prefix}_tokens"][1] <= response_width:
      raise ValueError(
        f"{prefix}_tokens {shapes[f'{prefix}_tokens']} leaves no prompt column before "
        f"the {response_width}-token response"
      )
  if shapes["response_tokens"][0] % grad_accum_steps:
    raise ValueError(
      f"batch size {shapes['response_tokens'][0]} is not divisible by grad_accum_steps={grad_accum_steps}"
    )
  return arrays


def sequence_hidden(params: Any, graphdef: nnx.GraphDef, batch: Batch, prefix: str) -> tuple[jax.Array, jax.Array]:
  """(hidden states predicting the response [B, R, embed], unembedding [embed, vocab]) of one side.

  Args:
    params: model state.
    graphdef: model graph definition.
    batch: a distillation batch.
    prefix: 'student' or 'teacher', which sequence to run.
  """
  model = nnx.merge(graphdef, params)
  hidden, _ = model.hidden(
    batch[f"{prefix}_tokens"], batch[f"{prefix}_positions"], segment_ids=batch[f"{prefix}_segment_ids"]
  )
  return response_block(hidden, batch["response_tokens"].shape[1]), model.unembedding_matrix()


def distill_loss(
  params: Any, teacher_params: Any, graphdef: nnx.GraphDef, batch: Batch, *, divergence: DivergenceConfig
) -> tuple[jax.Array, jax.Array]:
  """Divergence between the student (on its prompt) and the teacher (on its context) per response token.

  Args:
    params: the student's parameters (differentiated).
    teacher_params: the teacher's parameters; gradient stopped (pass `params` for a live teacher).
    graphdef: model graph definition (shared: the teacher is the same model).
    batch: arrays of `distill_batch.BATCH_KEYS`.
    divergence: the loss settings.

  Returns:
    (sum, count) float32 scalars over `response_mask`; the sum includes an MoE student's router
    load-balancing term.
  """
  with capture_router_stats() as captured:  # The student's routing only: the teacher is not trained.
    student_hidden, student_unembedding = sequence_hidden(params, graphdef, batch, "student")
  teacher_hidden, teacher_unembedding = sequence_hidden(
    jax.lax.stop_gradient(teacher_params), graphdef, batch, "teacher"
  )
  loss_sum, count = distillation_loss(
    divergence,
    student_hidden=student_hidden,
    student_unembedding=student_unembedding,
    teacher_hidden=teacher_hidden,
    teacher_unembedding=teacher_unembedding,
    tokens=batch["response_tokens"],
    mask=batch["response_mask"],
    behaviour_logprob=batch["behaviour_logprob"],
  )
  coef = nnx.merge(graphdef, params).cfg.router_aux_loss_coef
  return loss_sum + router_loss_sum(captured.total(), coef, count), count


def _step(
  state: TrainState,
  teacher_params: Any,
  batch: Batch,
  *,
  graphdef,
  optimizer: Optimizer,
  divergence: DivergenceConfig,
  constrain_micro,
) -> tuple[TrainState, dict[str, jax.Array]]:
  live = teacher_params is None

  def loss_fn(params, micro):
    return distill_loss(
      params, params if live else teacher_params, graphdef, constrain_micro(micro), divergence=divergence
    )

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def micro_step(carry, micro):
    loss_acc, count_acc, grad_acc = carry
    (loss_sum, count), grads = grad_fn(state.params, micro)
    grad_acc = jax.tree.map(lambda acc, g: acc + g.astype(jnp.float32), grad_acc, grads)
    return (loss_acc + loss_sum, count_acc + count, grad_acc), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
  carry = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros)
  if optimizer.grad_accum_steps == 1:
    carry, _ = micro_step(carry, batch)
  else:
    carry, _ = jax.lax.scan(micro_step, carry, split_micro_batches(batch, optimizer.grad_accum_steps))
  loss_sum, count, grad_sum = carry
  denominator = jnp.maximum(count, 1.0)  # No scored tokens: zero loss and zero gradients.
  grads = jax.tree.map(lambda g, p: (g / denominator).astype(p.dtype), grad_sum, state.params)
  updates, opt_state = optimizer.tx.update(grads, state.opt_state, state.params)
  metrics = {
    "loss": loss_sum / denominator,
    "tokens": count,
    "grad_norm": optax.tree.norm(grads),
    "learning_rate": jnp.asarray(optimizer.schedule(state.step), jnp.float32),
  }
  new_state = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state)
  return new_state, metrics


class DistillStep:
  """Callable `step(state, batch, teacher_params=None) -> (state, metrics)`; the state is donated.

  `teacher_params=None` means a live teacher (the student's current parameters). Without a mesh the
  step is a plain `jax.jit`; with one, the state and teacher keep their shardings and every batch array
  is sharded as ('batch', 'length') per the rules.
  """

  def __init__(
    self,
    graphdef: nnx.GraphDef,
    optimizer: Optimizer,
    divergence: DivergenceConfig,
    *,
    mesh: jax.sharding.Mesh | None = None,
    rules: sharding_lib.LogicalRules | None = None,
  ):
    self.graphdef = graphdef
    self.optimizer = optimizer
    self.divergence = divergence
    self.mesh = mesh
    self.rules = sharding_lib.DEFAULT_RULES if rules is None else rules
    self._jitted: dict[bool, Any] = {}

  def _body(self, state, teacher_params, batch):
    common = dict(graphdef=self.graphdef, optimizer=self.optimizer, divergence=self.divergence)
    if self.mesh is None:
      return _step(state, teacher_params, batch, constrain_micro=lambda micro: micro, **common)

    def constrain_micro(micro):
      return {key: sharding_lib.constrain(value, BATCH_AXES) for key, value in micro.items()}

    with sharding_lib.use_rules(self.mesh, self.rules):
      return _step(state, teacher_params, batch, constrain_micro=constrain_micro, **common)

  def jit_for(self, state: TrainState, live: bool):
    """The jitted function for states sharded like `state` (placed or abstract; also for `.lower`)."""
    if live not in self._jitted:
      if self.mesh is None:
        self._jitted[live] = jax.jit(self._body, donate_argnums=0)
      else:
        shardings = state_shardings(state)
        batch_sharding = jax.sharding.NamedSharding(self.mesh, sharding_lib.logical_to_spec(BATCH_AXES, self.rules))
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self._jitted[live] = jax.jit(
          self._body,
          in_shardings=(shardings, None if live else shardings.params, {key: batch_sharding for key in BATCH_KEYS}),
          out_shardings=(shardings, replicated),
          donate_argnums=0,
        )
    return self._jitted[live]

  def place_batch(self, batch: Batch) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays on the mesh (each process passes only its rows)."""
    arrays = check_distill_batch(batch, 1)
    if self.mesh is None:
      return {key: jnp.asarray(value) for key, value in arrays.items()}
    return sharding_lib.shard_batch(arrays, self.mesh, BATCH_AXES, self.rules)

  def __call__(
    self, state: TrainState, batch: Batch, teacher_params: Any = None
  ) -> tuple[TrainState, dict[str, jax.Array]]:
    arrays = check_distill_batch(batch, self.optimizer.grad_accum_steps)
    return self.jit_for(state, teacher_params is None)(state, teacher_params, arrays)
