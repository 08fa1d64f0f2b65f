"""Decoder-only transformer (Qwen3 dense and MoE / Llama 3) as one Flax NNX module."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import ssd_jax.model.router_stats as router_stats
from ssd_jax.kernels.attention import resolve_attention_impl
from ssd_jax.model.config import ModelConfig
from ssd_jax.model.kv_cache import KVCache
from ssd_jax.model.layer_stack import scan_blocks, stacked_blocks
from ssd_jax.model.layers import DecoderBlock, RMSNorm, make_param, rope_angles, rope_inverse_frequencies
from ssd_jax.model.moe import feed_forward
from ssd_jax.sharding import constrain

_REMAT_POLICIES = {
  "full": None,  # Save nothing; recompute the whole block in the backward pass.
  "dots": jax.checkpoint_policies.checkpoint_dots,
  "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def segment_mask(segment_ids: jax.Array) -> jax.Array:
  """Causal attention restricted to equal, non-zero segment ids.

  Args:
    segment_ids: int32 [batch, length]; 0 marks padding.

  Returns:
    bool [batch, length, length].
  """
  length = segment_ids.shape[1]
  causal = jnp.tril(jnp.ones((length, length), bool))
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  return causal[None] & same & (segment_ids[:, None, :] != 0)


def _refuse_packed_rows(segment_ids: jax.Array) -> None:
  """A cache keeps one valid bit per slot, so packed ids (above 1) would attend across their segments. Checked
  where the ids are concrete (eager calls); traced callers pass 0/1 (decode and prefill do)."""
  if not isinstance(segment_ids, jax.core.Tracer) and int(jnp.max(segment_ids, initial=0)) > 1:
    raise ValueError("with a cache, segment_ids mark valid tokens only (0 or 1); packed rows need cache=None")


@router_stats.returning_stats  # Remat bodies are traced apart: MoE statistics leave them as outputs.
def _block_forward(block, x, cos, sin, mask, kv_cache, segment_ids):
  return block(x, cos, sin, mask, kv_cache, segment_ids)


class Transformer(nnx.Module):
  """Token embedding, `num_layers` decoder blocks, final RMSNorm, (tied) unembedding."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed = make_param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), cfg.weight_dtype)
    if cfg.scan_layers:
      self.layers = stacked_blocks(cfg, rngs)
    else:
      self.layers = nnx.List(
        [DecoderBlock(cfg, rngs=rngs, feed_forward=feed_forward(cfg, i)) for i in range(cfg.num_layers)]
      )
    self.final_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ("embed",), cfg.weight_dtype, rngs=rngs)
    if cfg.tie_embeddings:
      self.lm_head = None
    else:
      self.lm_head = make_param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), cfg.weight_dtype)

  def hidden(
    self,
    tokens: jax.Array,
    positions: jax.Array,
    *,
    segment_ids: jax.Array | None = None,
    cache: KVCache | None = None,
    prefill: bool = False,
  ) -> tuple[jax.Array, KVCache | None]:
    """Final-norm hidden states. MoE blocks hand their RouterStats to an active `capture_router_stats()`.

    Args:
      tokens: int32 [batch, length].
      positions: int32 [batch, length], RoPE positions.
      segment_ids: int32 [batch, length] or None (all one segment); 0 marks padding. With a cache only 0/1.
      cache: None for a full causal forward; otherwise the tokens are written at slots
        cache.index..cache.index+length-1, padding marked invalid.
      prefill: the cache holds nothing before these tokens (its index is 0), so they attend only to each other:
        through the splash kernel where that is the resolved implementation (no [length, length] scores, and
        no pass over cache blocks per query block), else through the cache like any other step.

    Returns:
      (hidden [batch, length, embed] in cfg.dtype, the advanced cache or None).
    """
    cfg = self.cfg
    if tokens.ndim != 2 or positions.shape != tokens.shape:
      raise ValueError(f"tokens and positions must both be [batch, length], got {tokens.shape} and {positions.shape}")
    if segment_ids is not None and segment_ids.shape != tokens.shape:
      raise ValueError(f"segment_ids must match tokens {tokens.shape}, got {segment_ids.shape}")
    length = tokens.shape[1]
    # Gather from a table sharded only along vocab; an fsdp-sharded embed dim would be fully rematerialised.
    table = constrain(self.embed[...], ("vocab", None))
    x = jnp.take(table, tokens, axis=0).astype(cfg.compute_dtype)
    x = constrain(x, ("batch", "length", "embed"))
    cos, sin = rope_angles(positions, rope_inverse_frequencies(cfg))
    seg = None
    if cache is None:
      seg = jnp.ones_like(tokens) if segment_ids is None else segment_ids
      # The flash kernel masks from the segment ids itself; no [batch, length, length] mask is built.
      mask = segment_mask(seg) if resolve_attention_impl(cfg.attention) == "xla" else None
    else:
      if segment_ids is not None:
        _refuse_packed_rows(segment_ids)
      token_valid = jnp.ones(tokens.shape, bool) if segment_ids is None else segment_ids != 0
      cache = cache.write_valid(token_valid)
      mask = None  # cache attention masks from cache.valid itself
      if prefill and resolve_attention_impl(cfg.attention) == "splash":
        seg = token_valid.astype(jnp.int32)  # Padding is its own segment, as in training.
      k_all, v_all = cache.k, cache.v

    if cfg.scan_layers:
      kv = None if cache is None else (k_all, v_all, cache.index, cache.valid)
      x, updated = scan_blocks(
        self.layers, x, cos, sin, mask, seg, kv, remat=cfg.remat != "none", remat_policy=_REMAT_POLICIES.get(cfg.remat)
      )
      if cache is not None:
        k_all, v_all = updated
    else:
      block_fn = _block_forward
      if cfg.remat != "none":
        block_fn = nnx.remat(_block_forward, policy=_REMAT_POLICIES[cfg.remat])
      for layer, block in enumerate(self.layers):
        kv = None if cache is None else (k_all, v_all, layer, cache.index, cache.valid)
        (x, updated), stats = block_fn(block, x, cos, sin, mask, kv, seg)
        router_stats.record(stats)
        if cache is not None:
          k_all, v_all = updated
    if cache is not None:
      cache = cache.replace(k=k_all, v=v_all, index=cache.index + length)
    return self.final_norm(x), cache

  def unembedding_matrix(self) -> jax.Array:
    """The [embed, vocab] matrix mapping hidden states to logits (for chunked losses)."""
    return self.embed[...].T if self.lm_head is None else self.lm_head[...]

  def unembed(self, hidden: jax.Array) -> jax.Array:
    """Args: hidden [..., embed]. Returns: float32 logits [..., vocab]."""
    w = self.unembedding_matrix().astype(self.cfg.compute_dtype)
    logits = jnp.einsum("...d,dv->...v", hidden, w, preferred_element_type=jnp.float32)
    if logits.ndim == 3:
      logits = constrain(logits, ("batch", "length", "vocab"))
    return logits

  def __call__(
    self, tokens: jax.Array, positions: jax.Array, *, segment_ids: jax.Array | None = None, cache: KVCache | None = None
  ) -> tuple[jax.Array, KVCache | None]:
    """Logits float32 [batch, length, vocab] and the advanced cache (see `hidden`)."""
    hidden, cache = self.hidden(tokens, positions, segment_ids=segment_ids, cache=cache)
    return self.unembed(hidden), cache
