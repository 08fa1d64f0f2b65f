"""Attention over the KV cache that reads only its filled part: block by block, with an online softmax.

The cache has a static number of slots (max_len) so that one program serves a whole generation, but
at step t only the first index + length slots hold keys. Attending every slot makes a token cost
O(max_len) however short the context; here a loop runs over blocks of `CACHE_BLOCK` slots up to the
last filled one (a trip count known only at run time) and merges the blocks with the running
maximum and normaliser of flash attention, so a token costs O(filled slots). Rows share the slot
index; each row's own length (padding, finished rows) is in the cache's `valid` mask.

Masked scores take the finite MASK_VALUE, as in the dense path: a row with no visible key (padding)
averages the values it visited instead of producing NaN, and carries no meaning either way.

`attend_cache` picks the implementation: on TPU (the resolved attention is 'splash') a decode step runs
the ragged Pallas kernel (`ssd_jax.kernels.decode_attention`: each row reads only its live blocks, a
finished row none) on each device's rows and kv heads; everything else runs `cache_attention` here, the
kernel's referee.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from ssd_jax import sharding
from ssd_jax.kernels import decode_attention
from ssd_jax.kernels.attention import resolve_attention_impl, target_platform

# Slots per block of the loop: large enough that the loop overhead is small at decode, small enough
# that a short context reads few empty slots.
CACHE_BLOCK = 128
MASK_VALUE = decode_attention.MASK_VALUE  # One masked score for every attention path.
KV_LOGICAL_AXES = ("layers", "batch", "length", "kv_heads", "head_dim")


def cache_attention(
  q: jax.Array, k_all: jax.Array, v_all: jax.Array, layer, index: jax.Array, valid: jax.Array
) -> jax.Array:
  """Grouped-query attention of `length` new queries to the filled slots of one layer's cache.

  Query t sits at slot index + t and sees slot j iff j <= index + t and valid[b, j]; its key and
  value must already be written.

  Args:
    q: [batch, length, heads, head_dim].
    k_all, v_all: [layers, batch, max_len, kv_heads, head_dim]; heads is a multiple of kv_heads.
    layer: int or int32 scalar, the layer whose slots are read.
    index: int32 scalar, the slot of the first query.
    valid: bool [batch, max_len].

  Returns:
    [batch, length, heads, head_dim] in q's dtype.
  """
  b, t, h, dh = q.shape
  _, _, max_len, kvh, _ = k_all.shape
  block = min(CACHE_BLOCK, max_len)
  g = h // kvh
  qg = q.reshape(b, t, kvh, g, dh)
  query_slot = index + jnp.arange(t, dtype=jnp.int32)
  num_blocks = (index + t + block - 1) // block

  def body(j, carry):
    running_max, normaliser, acc = carry
    # The last block is shifted back to stay inside the cache; slots below j * block were seen already.
    start = jnp.minimum(j * block, max_len - block)
    k = jax.lax.dynamic_slice(k_all, (layer, 0, start, 0, 0), (1, b, block, kvh, dh))[0]
    v = jax.lax.dynamic_slice(v_all, (layer, 0, start, 0, 0), (1, b, block, kvh, dh))[0]
    slots = start + jnp.arange(block, dtype=jnp.int32)
    seen = (slots >= j * block)[None, :] & (slots[None, :] <= query_slot[:, None])  # [t, block]
    visible = seen[None] & jax.lax.dynamic_slice(valid, (0, start), (b, block))[:, None, :]  # [b, t, block]
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k.astype(q.dtype), preferred_element_type=jnp.float32)
    scores = jnp.where(visible[:, None, None], scores * np.float32(dh**-0.5), MASK_VALUE)
    new_max = jnp.maximum(running_max, jnp.max(scores, axis=-1))
    probs = jnp.exp(scores - new_max[..., None])
    rescale = jnp.exp(running_max - new_max)
    normaliser = normaliser * rescale + jnp.sum(probs, axis=-1)
    pv = jnp.einsum("bkgts,bskd->bkgtd", probs.astype(q.dtype), v.astype(q.dtype), preferred_element_type=jnp.float32)
    return new_max, normaliser, acc * rescale[..., None] + pv

  init = (
    jnp.full((b, kvh, g, t), -jnp.inf, jnp.float32),
    jnp.zeros((b, kvh, g, t), jnp.float32),
    jnp.zeros((b, kvh, g, t, dh), jnp.float32),
  )
  _, normaliser, acc = jax.lax.fori_loop(0, num_blocks, body, init)
  out = (acc / normaliser[..., None]).astype(q.dtype)  # [b, kvh, g, t, dh]
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, dh)


def attend_cache(
  q: jax.Array, k_all: jax.Array, v_all: jax.Array, layer, index: jax.Array, valid: jax.Array, impl: str
) -> jax.Array:
  """`cache_attention`, through the ragged decode kernel where `impl` resolves to the Pallas kernels.

  The kernel serves one query per row over whole 128-slot blocks with lane-wide heads, on a cache whose
  rules shard only rows and kv heads (each device attends its own, as the cache is laid out); any other
  call, and every call where `impl` resolves to 'xla', runs `cache_attention`. Same arguments.
  """
  b, t, _, dh = q.shape
  if resolve_attention_impl(impl) != "splash" or not decode_attention.supported(t, k_all.shape[2], dh):
    return cache_attention(q, k_all, v_all, layer, index, valid)
  kernel = functools.partial(decode_attention.decode_attention, interpret=target_platform() != "tpu")
  active = sharding.active_rules()
  if active is None:
    return kernel(q, k_all, v_all, layer, index, valid)
  mesh, rules = active
  cache = sharding.logical_to_spec(KV_LOGICAL_AXES, rules)
  layer_axes, batch_axes, length_axes, kv_axes, dim_axes = cache
  # A cache split along slots or head_dim, or rows/heads that do not divide the mesh, stays with XLA:
  # resharding the cache for the kernel would move all of it every step.
  if (
    layer_axes is not None
    or length_axes is not None
    or dim_axes is not None
    or b % sharding.axes_size(mesh, batch_axes)
    or k_all.shape[3] % sharding.axes_size(mesh, kv_axes)
  ):
    return cache_attention(q, k_all, v_all, layer, index, valid)
  rows = PartitionSpec(batch_axes, None, kv_axes, None)
  mapped = jax.shard_map(
    kernel,
    mesh=mesh,
    in_specs=(rows, cache, cache, PartitionSpec(), PartitionSpec(), PartitionSpec(batch_axes, None)),
    out_specs=rows,
    check_vma=False,
  )
  return mapped(q, k_all, v_all, jnp.asarray(layer, jnp.int32), jnp.asarray(index, jnp.int32), valid)
