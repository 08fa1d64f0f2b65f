"""Router statistics of mixture-of-experts blocks, and the load-balancing loss built from them.

The loss is Hugging Face Qwen3-MoE's `load_balancing_loss_func` (Switch Transformer, eqs. 4-6) over
the valid tokens of every MoE layer pooled together:

  f_e = (top-k assignments to expert e) / N,   P_e = (sum of router probabilities of e) / N,
  aux = E * sum_e f_e * P_e,

with N the valid tokens summed over layers. f is piecewise constant, so the gradient flows through P.
Both sums add over layers and micro-batches, so each MoE block reports [E] sums, not the loss.

The model stays a plain function of its inputs: MoE blocks hand their statistics to the innermost
`capture_router_stats()` context (like `sharding.use_rules`), and the dense path is unchanged:

  with capture_router_stats() as captured:
    logits, _ = model(tokens, positions, segment_ids=segment_ids)
  aux = load_balancing_loss(captured.total())
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class RouterStats:
  """Sums over valid tokens (and over layers, once added up).

  Attributes:
    expert_tokens: float32 [..., experts], top-k assignments per expert (no gradient).
    router_probs: float32 [..., experts], router probabilities per expert (differentiable).
    tokens: float32 [...], valid tokens routed.
  """

  expert_tokens: jax.Array
  router_probs: jax.Array
  tokens: jax.Array

  def __add__(self, other: RouterStats) -> RouterStats:
    return jax.tree.map(jnp.add, self, other)

  def summed(self) -> RouterStats:
    """Sums away leading axes (e.g. the 'layers' axis of a scanned stack)."""
    return RouterStats(
      expert_tokens=jnp.sum(self.expert_tokens.reshape(-1, self.expert_tokens.shape[-1]), axis=0),
      router_probs=jnp.sum(self.router_probs.reshape(-1, self.router_probs.shape[-1]), axis=0),
      tokens=jnp.sum(self.tokens),
    )


def router_stats(probs: jax.Array, expert_index: jax.Array, valid: jax.Array) -> RouterStats:
  """Statistics of one layer's routing.

  Args:
    probs: float32 [tokens, experts], softmax of the router logits.
    expert_index: int32 [tokens, top_k], the chosen experts.
    valid: bool [tokens]; False for padding.
  """
  weight = valid.astype(jnp.float32)
  chosen = jax.nn.one_hot(expert_index, probs.shape[-1], dtype=jnp.float32).sum(axis=1)
  return RouterStats(
    expert_tokens=jax.lax.stop_gradient(weight @ chosen),
    router_probs=weight @ probs.astype(jnp.float32),
    tokens=jnp.sum(weight),
  )


class CapturedRouterStats:
  """The statistics recorded by MoE blocks traced inside one `capture_router_stats()` context."""

  def __init__(self):
    self.recorded: list[RouterStats] = []

  def total(self) -> RouterStats | None:
    """Sum over everything recorded (all MoE layers), or None when nothing was (a dense model)."""
    if not self.recorded:
      return None
    total = self.recorded[0].summed()
    for stats in self.recorded[1:]:
      total = total + stats.summed()
    return total


_CAPTURE: contextvars.ContextVar[CapturedRouterStats | None] = contextvars.ContextVar(
  "ssd_jax_router_stats", default=None
)


@contextlib.contextmanager
def capture_router_stats() -> Iterator[CapturedRouterStats]:
  """Collects the RouterStats of MoE blocks traced in this context (values of the same trace)."""
  captured = CapturedRouterStats()
  token = _CAPTURE.set(captured)
  try:
    yield captured
  finally:
    _CAPTURE.reset(token)


def record(stats: RouterStats | None) -> None:
  """Hands `stats` to the innermost capture context; dropped when none is active or stats is None."""
  captured = _CAPTURE.get()
  if captured is not None and stats is not None:
    captured.recorded.append(stats)


def returning_stats(fn: Callable[..., Any]) -> Callable[..., tuple[Any, RouterStats | None]]:
  """Wraps `fn` (run inside a scan or remat body) to return (fn's output, the RouterStats it recorded).

  Values recorded inside a jax transform's body belong to that body's trace, so they must leave it as
  outputs; the caller then `record`s them in the outer trace.
  """

  def wrapped(*args, **kwargs):
    with capture_router_stats() as captured:
      out = fn(*args, **kwargs)
    return out, captured.total()

  return wrapped


def load_balancing_loss(stats: RouterStats) -> jax.Array:
  """Hugging Face's router auxiliary loss, float32 scalar (0 when no token was routed).

  Args:
    stats: summed over the MoE layers (`CapturedRouterStats.total()`).
  """
  num_experts = stats.router_probs.shape[-1]
  tokens = jnp.maximum(stats.tokens, 1.0)
  return num_experts * jnp.sum((stats.expert_tokens / tokens) * (stats.router_probs / tokens))


def expert_load(stats: RouterStats) -> dict[str, jax.Array]:
  """Expert-load statistics for logging.

  Returns:
    tokens_per_expert float32 [experts] (assignments, summed over layers), and
    max_over_mean: the busiest expert's load over the mean load (1 is perfectly balanced).
  """
  load = stats.expert_tokens
  return {"tokens_per_expert": load, "max_over_mean": jnp.max(load) / jnp.maximum(jnp.mean(load), 1e-9)}
