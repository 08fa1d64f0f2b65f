"""The SFT loss and step: masked mean cross-entropy over response tokens, one AdamW update per call.

With `grad_accum_steps = n` the global batch is split into n micro-batches inside the step (see
`train_step.TrainStep`), so the update equals the whole-batch one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx

from ssd_jax import sharding as sharding_lib
from ssd_jax.model.router_stats import capture_router_stats
from ssd_jax.train.cross_entropy import chunked_cross_entropy
from ssd_jax.train.optimizer import Optimizer
from ssd_jax.train.router_loss import router_loss_sum, router_metrics
from ssd_jax.train.train_step import TrainStep

BATCH_KEYS = ("tokens", "targets", "loss_mask", "segment_ids", "positions")


def sft_loss(
  params: Any, graphdef: nnx.GraphDef, batch: Mapping[str, jax.Array], *, chunk_size: int
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
  """Summed token cross-entropy over `loss_mask` and the number of tokens it covers.

  Args:
    params: the model state (second half of `nnx.split(model)`).
    graphdef: the model graph definition.
    batch: int [B, L] arrays `tokens`, `targets`, `loss_mask`, `segment_ids`, `positions`.
    chunk_size: sequence chunk for the cross-entropy, so [B, L, V] float32 logits never exist at once.

  Returns:
    (loss_sum, count, metrics): float32 scalars (loss_sum includes an MoE model's router load-balancing
    term) and the model's `router_metrics` ({} for a dense model).
  """
  model = nnx.merge(graphdef, params)
  with capture_router_stats() as captured:
    hidden, _ = model.hidden(batch["tokens"], batch["positions"], segment_ids=batch["segment_ids"])
  loss_sum, count = chunked_cross_entropy(
    hidden, model.unembedding_matrix(), batch["targets"], batch["loss_mask"], chunk_size=chunk_size
  )
  stats = captured.total()
  return loss_sum + router_loss_sum(stats, model.cfg.router_aux_loss_coef, count), count, router_metrics(stats)


def _same_shapes(arrays: dict[str, Any]) -> None:
  shapes = {key: tuple(value.shape) for key, value in arrays.items()}
  if len(set(shapes.values())) != 1:
    raise ValueError(f"SFT batch arrays must all be [batch, length], got shapes {shapes}")


def make_sft_step(
  graphdef: nnx.GraphDef,
  optimizer: Optimizer,
  *,
  chunk_size: int,
  mesh: jax.sharding.Mesh | None = None,
  rules: sharding_lib.LogicalRules | None = None,
) -> TrainStep:
  """The SFT train step: `step(state, batch) -> (state, metrics)` on int [B, L] arrays of `BATCH_KEYS`."""
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  return TrainStep(
    lambda params, batch, aux: sft_loss(params, graphdef, batch, chunk_size=chunk_size),
    optimizer,
    batch_keys=BATCH_KEYS,
    check_batch=_same_shapes,
    what="SFT",
    mesh=mesh,
    rules=rules,
  )
