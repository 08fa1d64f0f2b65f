"""The MoE router load-balancing term of a training loss, in the project's (sum, count) convention.

A loss returns (loss_sum, count) and the update divides by the count summed over micro-batches. The
router loss of a micro-batch is a ratio over its own tokens (model.router_stats), so it enters the sum
as coef * aux * count: the step then trains on the count-weighted mean of the micro-batches' aux
losses, as Hugging Face does per forward. A dense model records no statistics and adds nothing.

  with capture_router_stats() as captured:
    hidden, _ = model.hidden(tokens, positions, segment_ids=segment_ids)
  loss_sum, count = chunked_cross_entropy(...)
  loss_sum += router_loss_sum(captured.total(), model.cfg.router_aux_loss_coef, count)

Capture only the forwards being trained (the student's, not a teacher's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.model.router_stats import RouterStats, expert_load, load_balancing_loss


def router_loss_sum(stats: RouterStats | None, coef: float, count: jax.Array) -> jax.Array:
  """coef * load-balancing loss * count, float32 scalar; 0 without MoE layers or with coef 0."""
  if stats is None or coef == 0:
    return jnp.zeros((), jnp.float32)
  return coef * load_balancing_loss(stats) * count.astype(jnp.float32)


def router_metrics(stats: RouterStats | None) -> dict[str, jax.Array]:
  """Logging values: router_aux_loss, expert_load_max_over_mean (1 is balanced) and the busiest
  expert's share of assignments; empty for a dense model."""
  if stats is None:
    return {}
  load = expert_load(stats)
  return {
    "router_aux_loss": load_balancing_loss(stats),
    "expert_load_max_over_mean": load["max_over_mean"],
    "expert_load_max_share": jnp.max(load["tokens_per_expert"]) / jnp.maximum(jnp.sum(load["tokens_per_expert"]), 1),
  }
