"""Attention over the KV cache that reads only its filled part: block by block, with an online softmax.

The cache has a static number of slots (max_len) so that one program serves a whole generation, but
at step t only the first index + length slots hold keys. Attending every slot makes a token cost
O(max_len) however short the context; here a loop runs over the cache's blocks (`cache_layout`) up to
the last filled one (a trip count known only at run time) and merges the blocks with the running
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
from ssd_jax.model.cache_layout import K_LOGICAL_AXES, V_LOGICAL_AXES, num_slots

MASK_VALUE = decode_attention.MASK_VALUE  # One masked score for every attention path.


def cache_attention(
  q: jax.Array, k_all: jax.Array, v_all: jax.Array, layer, index: jax.Array, valid: jax.Array
) -> jax.Array:
  """Grouped-query attention of `length` new queries to the filled slots of one layer's cache.

  Query t sits at slot index + t and sees slot j iff j <= index + t and valid[b, j]; its key and
  value must already be written.

  Args:
    q: [batch, length, heads, head_dim].
    k_all: [layers, blocks, batch, kv_heads, head_dim, block] and v_all [layers, blocks, batch, kv_heads,
      block, head_dim] (`cache_layout`); heads is a multiple of kv_heads.
    layer: int or int32 scalar, the layer whose slots are read.
    index: int32 scalar, the slot of the first query.
    valid: bool [batch, blocks * block].

  Returns:
    [batch, length, heads, head_dim] in q's dtype.
  """
  b, t, h, dh = q.shape
  kvh, block = k_all.shape[3], k_all.shape[5]
  g = h // kvh
  # Queries as [batch, kv_heads, group * length, head_dim], the rows of both products; row order (group, t).
  qg = q.reshape(b, t, kvh, g, dh).transpose(0, 2, 3, 1, 4).reshape(b, kvh, g * t, dh)
  query_slot = index + jnp.arange(t, dtype=jnp.int32)
  num_blocks = (index + t + block - 1) // block

  def body(j, carry):
    running_max, normaliser, acc = carry
    k = jax.lax.dynamic_slice(k_all, (layer, j, 0, 0, 0, 0), (1, 1, *k_all.shape[2:]))[0, 0]  # [b, kvh, dh, block]
    v = jax.lax.dynamic_slice(v_all, (layer, j, 0, 0, 0, 0), (1, 1, *v_all.shape[2:]))[0, 0]  # [b, kvh, block, dh]
    slots = j * block + jnp.arange(block, dtype=jnp.int32)
    visible = jax.lax.dynamic_slice(valid, (0, j * block), (b, block))[:, None, :] & (slots <= query_slot[:, None])
    visible = jnp.broadcast_to(visible[:, None, None], (b, 1, g, t, block)).reshape(b, 1, g * t, block)
    scores = jnp.einsum("bkqd,bkds->bkqs", qg, k.astype(q.dtype), preferred_element_type=jnp.float32)
    scores = jnp.where(visible, scores * np.float32(dh**-0.5), MASK_VALUE)
    new_max = jnp.maximum(running_max, jnp.max(scores, axis=-1))
    probs = jnp.exp(scores - new_max[..., None])
    rescale = jnp.exp(running_max - new_max)
    normaliser = normaliser * rescale + jnp.sum(probs, axis=-1)
    pv = jnp.einsum("bkqs,bksd->bkqd", probs.astype(q.dtype), v.astype(q.dtype), preferred_element_type=jnp.float32)
    return new_max, normaliser, acc * rescale[..., None] + pv

  init = (
    jnp.full((b, kvh, g * t), -jnp.inf, jnp.float32),
    jnp.zeros((b, kvh, g * t), jnp.float32),
    jnp.zeros((b, kvh, g * t, dh), jnp.float32),
  )
  _, normaliser, acc = jax.lax.fori_loop(0, num_blocks, body, init)
  out = (acc / normaliser[..., None]).astype(q.dtype).reshape(b, kvh, g, t, dh)
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
  if resolve_attention_impl(impl) != "splash" or not decode_attention.supported(t, num_slots(k_all), dh):
    return cache_attention(q, k_all, v_all, layer, index, valid)
  kernel = functools.partial(decode_attention.decode_attention, interpret=target_platform() != "tpu")
  active = sharding.active_rules()
  if active is None:
    return kernel(q, k_all, v_all, layer, index, valid)
  mesh, rules = active
  k_spec = sharding.logical_to_spec(K_LOGICAL_AXES, rules)
  v_spec = sharding.logical_to_spec(V_LOGICAL_AXES, rules)
  layer_axes, length_axes, batch_axes, kv_axes, dim_axes, _ = k_spec
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
    in_specs=(rows, k_spec, v_spec, PartitionSpec(), PartitionSpec(), PartitionSpec(batch_axes, None)),
    out_specs=rows,
    check_vma=False,
  )
  return mapped(q, k_all, v_all, jnp.asarray(layer, jnp.int32), jnp.asarray(index, jnp.int32), valid)
