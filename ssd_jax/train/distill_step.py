"""The jitted teacher-student step: student and teacher forwards, divergence on response tokens, one update.

The student runs on `student_*` arrays and the teacher on `teacher_*` arrays (see `distill_batch`);
both are cut to the hidden states that predict the shared response tokens and handed to
`distillation_loss`. The teacher's parameters are either a second parameter set (frozen initial or EMA
teacher) or, for a 'live' teacher, the student's own parameters; both are under
`jax.lax.stop_gradient`, so only the student is updated. Accumulation, the update and sharding are the
shared `train_step.TrainStep`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from ssd_jax import sharding as sharding_lib
from ssd_jax.model.router_stats import capture_router_stats
from ssd_jax.train.cross_entropy import chunked_token_logprobs
from ssd_jax.train.distill_batch import BATCH_KEYS, response_block
from ssd_jax.train.distillation_loss import DivergenceConfig, distillation_loss
from ssd_jax.train.gradient_step import split_micro_batches
from ssd_jax.train.optimizer import Optimizer
from ssd_jax.train.router_loss import router_loss_sum, router_metrics
from ssd_jax.train.train_step import TrainStep

Batch = Mapping[str, Any]


def _check_widths(arrays: dict[str, Any]) -> None:
  """Each side's arrays share one length, and each prompt side leaves room before the response."""
  shapes = {key: tuple(np.shape(v)) for key, v in arrays.items()}
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
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
  """Divergence between the student (on its prompt) and the teacher (on its context) per response token.

  Args:
    params: the student's parameters (differentiated).
    teacher_params: the teacher's parameters; gradient stopped (pass `params` for a live teacher).
    graphdef: model graph definition (shared: the teacher is the same model).
    batch: arrays of `distill_batch.BATCH_KEYS`.
    divergence: the loss settings.

  Returns:
    (sum, count, metrics): float32 scalars over `response_mask` (the sum includes an MoE student's router
    load-balancing term) and the student's `router_metrics` ({} for a dense model).
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
  stats = captured.total()
  return loss_sum + router_loss_sum(stats, coef, count), count, router_metrics(stats)


def make_behaviour_logprobs(
  graphdef: nnx.GraphDef,
  divergence: DivergenceConfig,
  *,
  num_micro: int = 1,
  mesh: jax.sharding.Mesh | None = None,
  rules: sharding_lib.LogicalRules | None = None,
):
  """`behaviour(params, batch) -> batch` whose `behaviour_logprob` is the student's log-prob of each response
  token at the loss temperature, untruncated, under `params`: the importance weights' denominator.

  Called with the parameters that sampled the rollouts, the weights start at 1 (to float rounding) and measure only
  how far the updates on the batch moved the student (as SDPO's code, which recomputes old log-probs). The
  sampler's `logprob_sampled` would not do: with top-k/top-p rollouts it is the truncated, renormalised
  probability, and the weight would start at the kept mass (<= 1), lowest on the uncertain tokens.

  Args:
    graphdef: the model's graph definition.
    divergence: the loss settings (its temperature and chunk size).
    num_micro: forwards over this many micro-batches, as the train step splits them.
    mesh, rules: where the parameters and batch live; None runs unsharded.
  """
  rules = sharding_lib.DEFAULT_RULES if rules is None else rules

  def micro_logprobs(params, micro):
    hidden, unembedding = sequence_hidden(params, graphdef, micro, "student")
    return chunked_token_logprobs(
      hidden,
      unembedding,
      micro["response_tokens"],
      chunk_size=divergence.chunk_size,
      temperature=divergence.temperature,
    )

  @jax.jit
  def logprobs(params, batch):
    with contextlib.nullcontext() if mesh is None else sharding_lib.use_rules(mesh, rules):
      if num_micro == 1:
        return micro_logprobs(params, batch)
      per_micro = jax.lax.map(lambda micro: micro_logprobs(params, micro), split_micro_batches(batch, num_micro))
      return per_micro.swapaxes(0, 1).reshape(batch["response_tokens"].shape)  # undoes the strided split

  def behaviour(params: Any, batch: Batch) -> dict[str, Any]:
    arrays = {key: batch[key] for key in BATCH_KEYS}
    fresh = logprobs(params, arrays)
    if mesh is not None:
      fresh = jax.device_put(fresh, batch["behaviour_logprob"].sharding)
    return {**batch, "behaviour_logprob": fresh}

  return behaviour


def make_distill_step(
  graphdef: nnx.GraphDef,
  optimizer: Optimizer,
  divergence: DivergenceConfig,
  *,
  mesh: jax.sharding.Mesh | None = None,
  rules: sharding_lib.LogicalRules | None = None,
) -> TrainStep:
  """The teacher-student step: `step(state, batch, teacher_params) -> (state, metrics)`; the state is donated.

  `teacher_params=None` means a live teacher (the student's current parameters, under stop-gradient).
  """

  def loss_fn(params, batch, teacher_params):
    teacher = params if teacher_params is None else teacher_params
    return distill_loss(params, teacher, graphdef, batch, divergence=divergence)

  return TrainStep(
    loss_fn,
    optimizer,
    batch_keys=BATCH_KEYS,
    check_batch=_check_widths,
    what="distillation",
    mesh=mesh,
    rules=rules,
  )
