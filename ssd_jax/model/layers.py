"""Transformer building blocks: RMSNorm, RoPE (with Llama 3 scaling), GQA attention, SwiGLU MLP.

Parameters are stored in einsum-friendly layouts ([in, heads, head_dim] rather than torch's
[out, in]) and each carries logical axis names in its `out_sharding` metadata.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import ssd_jax.model.cache_layout as cache_layout
from ssd_jax.kernels.attention import splash_attention
from ssd_jax.model.cache_attention import MASK_VALUE, attend_cache
from ssd_jax.model.config import ModelConfig
from ssd_jax.sharding import constrain

_INIT_STDDEV = 0.02


def make_param(
  rngs: nnx.Rngs, shape: Sequence[int], names: tuple[str | None, ...], dtype, init: str = "normal"
) -> nnx.Param:
  """A parameter of `shape` carrying logical axis `names` (sharded later by the rules table)."""
  if init == "ones":
    value = jnp.ones(shape, dtype)
  else:
    value = (_INIT_STDDEV * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
  return nnx.Param(value, out_sharding=names, eager_sharding=False)


class RMSNorm(nnx.Module):
  """x / rms(x) * scale over the last axis, computed in float32."""

  def __init__(self, dim: int, eps: float, names: tuple[str | None, ...], param_dtype, *, rngs: nnx.Rngs):
    self.eps = eps
    self.scale = make_param(rngs, (dim,), names, param_dtype, init="ones")

  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x [..., dim]. Returns: same shape and dtype."""
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return normed.astype(x.dtype) * self.scale[...].astype(x.dtype)


def rope_inverse_frequencies(cfg: ModelConfig) -> np.ndarray:
  """RoPE inverse frequencies [head_dim // 2] (float32), Llama 3 scaled when configured."""
  dim = cfg.head_dim
  inv_freq = 1.0 / (np.float32(cfg.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
  inv_freq = inv_freq.astype(np.float32)
  scaling = cfg.rope_scaling
  if scaling is None:
    return inv_freq
  # Llama 3.1: long wavelengths are divided by `factor`, short ones kept, a smooth ramp between.
  old_len = scaling.original_max_position_embeddings
  low_wavelen = old_len / scaling.low_freq_factor
  high_wavelen = old_len / scaling.high_freq_factor
  wavelen = 2 * np.pi / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
  smooth = (old_len / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rope_angles(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
  """cos and sin of position * frequency.

  Args:
    positions: int32 [batch, length].
    inv_freq: [head_dim // 2].

  Returns:
    (cos, sin), each float32 [batch, length, head_dim // 2].
  """
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates halves (x1, x2) of the head dimension (the Hugging Face layout, not interleaved).

  Args:
    x: [batch, length, heads, head_dim].
    cos, sin: [batch, length, head_dim // 2].

  Returns:
    Same shape and dtype as x.
  """
  x32 = x.astype(jnp.float32)
  x1, x2 = jnp.split(x32, 2, axis=-1)
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """Grouped-query attention with float32 scores and softmax.

  Args:
    q: [batch, length, heads, head_dim].
    k, v: [batch, kv_length, kv_heads, head_dim]; heads is a multiple of kv_heads.
    mask: bool [batch, length, kv_length], True where a query may attend a key.

  Returns:
    [batch, length, heads, head_dim] in q's dtype.
  """
  b, t, h, dh = q.shape
  kvh = k.shape[2]
  q = q.reshape(b, t, kvh, h // kvh, dh)
  scores = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(q.dtype), preferred_element_type=jnp.float32)
  scores = scores * np.float32(dh**-0.5)
  scores = jnp.where(mask[:, None, None, :, :], scores, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
  out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(q.dtype))
  return out.reshape(b, t, h, dh)


class Attention(nnx.Module):
  """Multi-head attention with GQA, optional q/k RMSNorm (Qwen3), RoPE and an optional KV cache."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, h, kvh, dh, pdt = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.weight_dtype
    self.dtype = cfg.compute_dtype
    self.attention = cfg.attention
    self.q_proj = make_param(rngs, (d, h, dh), ("embed", "heads", "head_dim"), pdt)
    self.k_proj = make_param(rngs, (d, kvh, dh), ("embed", "kv_heads", "head_dim"), pdt)
    self.v_proj = make_param(rngs, (d, kvh, dh), ("embed", "kv_heads", "head_dim"), pdt)
    self.o_proj = make_param(rngs, (h, dh, d), ("heads", "head_dim", "embed"), pdt)
    if cfg.qk_norm:
      self.q_norm = RMSNorm(dh, cfg.rms_norm_eps, ("head_dim",), pdt, rngs=rngs)
      self.k_norm = RMSNorm(dh, cfg.rms_norm_eps, ("head_dim",), pdt, rngs=rngs)
    else:
      self.q_norm = self.k_norm = None

  def __call__(self, x, cos, sin, mask, kv_cache=None, segment_ids=None):
    """Attends x to itself, or to the cache after writing x's keys and values into it.

    Args:
      x: [batch, length, embed].
      cos, sin: RoPE angles [batch, length, head_dim // 2].
      mask: without a cache, bool [batch, length, length], or None for causal attention within equal
        `segment_ids` by the splash kernel; unused with a cache.
      kv_cache: None, or (k_all, v_all, layer, index, valid) with k_all, v_all every layer's cache in the
        layout of `cache_layout` and valid bool [batch, cache]; this layer's keys/values are written at slots
        index..index+length-1, then the filled slots are attended (`attend_cache`).
      segment_ids: int32 [batch, length], used when mask is None; with a cache, given only for a prefill into
        an empty cache, whose tokens then attend to each other through the splash kernel.

    Returns:
      (out [batch, length, embed], (k_all, v_all) updated, or None without a cache).
    """
    dt = self.dtype
    q = jnp.einsum("btd,dhk->bthk", x, self.q_proj[...].astype(dt))
    k = jnp.einsum("btd,dhk->bthk", x, self.k_proj[...].astype(dt))
    v = jnp.einsum("btd,dhk->bthk", x, self.v_proj[...].astype(dt))
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q = constrain(apply_rope(q, cos, sin), ("batch", "length", "heads", "head_dim"))
    k = constrain(apply_rope(k, cos, sin), ("batch", "length", "kv_heads", "head_dim"))
    v = constrain(v, ("batch", "length", "kv_heads", "head_dim"))
    updated = None
    if kv_cache is not None:
      k_all, v_all, layer, index, valid = kv_cache
      k_all, v_all = cache_layout.write(k_all, v_all, layer, index, k, v)
      k_all = constrain(k_all, cache_layout.K_LOGICAL_AXES)
      v_all = constrain(v_all, cache_layout.V_LOGICAL_AXES)
      updated = (k_all, v_all)
      if segment_ids is not None:
        out = splash_attention(q, k, v, segment_ids)
      else:
        out = attend_cache(q, k_all, v_all, layer, index, valid, self.attention)
    elif mask is None:
      out = splash_attention(q, k, v, segment_ids)
    else:
      out = dot_product_attention(q, k, v, mask)
    out = constrain(out, ("batch", "length", "heads", "head_dim"))
    return jnp.einsum("bthk,hkd->btd", out, self.o_proj[...].astype(dt)), updated


class MLP(nnx.Module):
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, f, pdt = cfg.hidden_size, cfg.intermediate_size, cfg.weight_dtype
    self.dtype = cfg.compute_dtype
    self.gate_proj = make_param(rngs, (d, f), ("embed", "mlp"), pdt)
    self.up_proj = make_param(rngs, (d, f), ("embed", "mlp"), pdt)
    self.down_proj = make_param(rngs, (f, d), ("mlp", "embed"), pdt)

  def __call__(self, x: jax.Array, segment_ids: jax.Array | None = None) -> jax.Array:
    """Args: x [batch, length, embed]; segment_ids: unused (the MoE block's signature). Returns: like x."""
    del segment_ids
    dt = self.dtype
    gate = jnp.einsum("btd,df->btf", x, self.gate_proj[...].astype(dt))
    up = jnp.einsum("btd,df->btf", x, self.up_proj[...].astype(dt))
    hidden = constrain(jax.nn.silu(gate) * up, ("batch", "length", "mlp"))
    return jnp.einsum("btf,fd->btd", hidden, self.down_proj[...].astype(dt))


class DecoderBlock(nnx.Module):
  """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

  `feed_forward` is the class of the mlp: MLP, or model.moe.MoEBlock for a mixture of experts.
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, feed_forward: type[nnx.Module] = MLP):
    pdt = cfg.weight_dtype
    self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ("embed",), pdt, rngs=rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.post_attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ("embed",), pdt, rngs=rngs)
    self.mlp = feed_forward(cfg, rngs=rngs)

  def __call__(self, x, cos, sin, mask, kv_cache=None, segment_ids=None):
    """Same arguments as Attention.__call__; returns (x [batch, length, embed], updated cache arrays)."""
    attn_out, updated = self.attn(self.input_norm(x), cos, sin, mask, kv_cache, segment_ids)
    x = constrain(x + attn_out, ("batch", "length", "embed"))
    x = constrain(x + self.mlp(self.post_attention_norm(x), segment_ids), ("batch", "length", "embed"))
    return x, updated
