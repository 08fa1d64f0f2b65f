"""Sparse mixture-of-experts feed-forward block (Hugging Face Qwen3-MoE's Qwen3MoeSparseMoeBlock).

router logits = x @ router (in the activation dtype); probabilities = softmax in float32; each token
takes its top-k experts, weights renormalised to sum to 1 when `norm_topk_prob`, then cast back to
the activation dtype; the output is the weighted sum of those experts' SwiGLU outputs. There are no
shared experts (Qwen3-MoE has none) and no capacity limit (see model.expert_dispatch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ssd_jax.model import router_stats
from ssd_jax.model.config import ModelConfig
from ssd_jax.model.expert_dispatch import DOWN_NAMES, GATE_UP_NAMES, routed_experts
from ssd_jax.model.layers import MLP, make_param
from ssd_jax.sharding import constrain


def route(logits: jax.Array, top_k: int, norm_topk_prob: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Top-k routing.

  Args:
    logits: [tokens, experts] router logits.
    top_k: experts per token.
    norm_topk_prob: renormalise the chosen probabilities to sum to 1.

  Returns:
    (probs float32 [tokens, experts], top-k probabilities float32 [tokens, top_k], expert index
    int32 [tokens, top_k]).
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  top_probs, expert_index = jax.lax.top_k(probs, top_k)
  if norm_topk_prob:
    top_probs = top_probs / jnp.sum(top_probs, axis=-1, keepdims=True)
  return probs, top_probs, expert_index


class MoEBlock(nnx.Module):
  """Router plus num_experts SwiGLU experts; each token uses num_experts_per_tok of them."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    e, d, f, pdt = cfg.num_experts, cfg.hidden_size, cfg.moe_intermediate_size, cfg.weight_dtype
    self.dtype = cfg.compute_dtype
    self.top_k = cfg.num_experts_per_tok
    self.norm_topk_prob = cfg.norm_topk_prob
    self.matmul_impl = cfg.moe_matmul
    # Every token needs every expert's logit, so the router is not split over experts.
    self.router = make_param(rngs, (d, e), ("embed", None), pdt)
    self.gate_proj = make_param(rngs, (e, d, f), GATE_UP_NAMES, pdt)
    self.up_proj = make_param(rngs, (e, d, f), GATE_UP_NAMES, pdt)
    self.down_proj = make_param(rngs, (e, f, d), DOWN_NAMES, pdt)

  def __call__(self, x: jax.Array, segment_ids: jax.Array | None = None) -> jax.Array:
    """Routes every token to its experts and records RouterStats (see model.router_stats).

    Args:
      x: [batch, length, embed].
      segment_ids: int32 [batch, length] or None; 0 marks padding, left out of the router statistics
        (padding is still routed: the block has no token dropping to exploit).

    Returns:
      [batch, length, embed].
    """
    b, t, d = x.shape
    dt = self.dtype
    logits = constrain(jnp.einsum("btd,de->bte", x, self.router[...].astype(dt)), ("batch", "length", None))
    probs, top_probs, expert_index = route(logits.reshape(b * t, -1), self.top_k, self.norm_topk_prob)
    valid = jnp.ones((b * t,), bool) if segment_ids is None else segment_ids.reshape(-1) != 0
    router_stats.record(router_stats.router_stats(probs, expert_index, valid))
    out = routed_experts(
      x.reshape(b * t, d),
      expert_index,
      top_probs.astype(dt),
      self.gate_proj[...].astype(dt),
      self.up_proj[...].astype(dt),
      self.down_proj[...].astype(dt),
      self.matmul_impl,
    )
    return out.reshape(b, t, d)


def feed_forward(cfg: ModelConfig, layer: int) -> type[nnx.Module]:
  """The feed-forward module class of block `layer`: MoEBlock or the dense MLP."""
  return MoEBlock if cfg.is_moe_layer(layer) else MLP
