"""How the KV cache stores its slots: in blocks, the block axis before the rows, keys transposed in a block.

  k: [layers, blocks, batch, kv_heads, head_dim, block]
  v: [layers, blocks, batch, kv_heads, block, head_dim]

Slot s of a row is (s // block, s % block). Decode attention reads the filled blocks one at a time, and
this layout serves that read: a block of one layer is one contiguous piece of memory (with rows before
slots, it was a piece per row), and both products of attention take their operands as stored, scores =
q [group, head_dim] @ k [head_dim, block] and q's output = probs [group, block] @ v [block, head_dim],
with no transposing copy of the block first. On CPU (`bench/generation_throughput.py --scaling`) that
halves the time of attention over the filled cache; the Pallas kernel reads the same [head_dim, block]
and [block, head_dim] tiles.

The block is `BLOCK` slots, or for a cache of fewer or uneven slots the largest power of two dividing its
slots (generation caches are whole multiples of `BLOCK`: `kv_cache.cache_slots`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BLOCK = 128
# The block axis carries the 'length' rule; the slots inside a block are never split.
K_LOGICAL_AXES = ("layers", "length", "batch", "kv_heads", "head_dim", None)
V_LOGICAL_AXES = ("layers", "length", "batch", "kv_heads", None, "head_dim")


def block_size(slots: int) -> int:
  """Slots per block of a cache of `slots` slots: BLOCK, or the largest power of two dividing slots."""
  block = BLOCK
  while slots % block:
    block //= 2
  return block


def shapes(layers: int, batch: int, slots: int, kv_heads: int, head_dim: int) -> tuple[tuple, tuple]:
  """(k shape, v shape) of a cache of `slots` slots per row."""
  block = block_size(slots)
  blocks = slots // block
  return (layers, blocks, batch, kv_heads, head_dim, block), (layers, blocks, batch, kv_heads, block, head_dim)


def num_slots(k_all: jax.Array) -> int:
  """Slots per row of a cache's keys."""
  return k_all.shape[1] * k_all.shape[5]


def v_blocks(v: jax.Array, block: int) -> jax.Array:
  """[..., batch, slots, kv_heads, head_dim] values -> [..., slots // block, batch, kv_heads, block, head_dim]."""
  *lead, b, s, kvh, dh = v.shape
  n = len(lead)
  v = v.reshape(*lead, b, s // block, block, kvh, dh)
  return jnp.moveaxis(v, (n + 1, n, n + 3, n + 2, n + 4), range(n, n + 5))


def v_slots(v_all: jax.Array) -> jax.Array:
  """The inverse of `v_blocks`: [..., blocks, batch, kv_heads, block, head_dim] ->
  [..., batch, slots, kv_heads, head_dim]."""
  *lead, nb, b, kvh, block, dh = v_all.shape
  n = len(lead)
  v = jnp.moveaxis(v_all, (n + 1, n, n + 3, n + 2, n + 4), range(n, n + 5))
  return v.reshape(*lead, b, nb * block, kvh, dh)


def k_blocks(k: jax.Array, block: int) -> jax.Array:
  """[..., batch, slots, kv_heads, head_dim] keys -> [..., slots // block, batch, kv_heads, head_dim, block]."""
  return jnp.swapaxes(v_blocks(k, block), -1, -2)  # The values' blocks, transposed within each block.


def k_slots(k_all: jax.Array) -> jax.Array:
  """The inverse of `k_blocks`: [..., blocks, batch, kv_heads, head_dim, block] ->
  [..., batch, slots, kv_heads, head_dim]."""
  return v_slots(jnp.swapaxes(k_all, -1, -2))


def write(
  k_all: jax.Array, v_all: jax.Array, layer, index: jax.Array, k: jax.Array, v: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Writes `length` new keys and values of one layer at slots index..index + length - 1.

  Args:
    k_all, v_all: the cache's keys and values, in the layout above.
    layer: int or int32 scalar.
    index: int32 scalar, the first slot written; index + length <= the cache's slots.
    k, v: [batch, length, kv_heads, head_dim].

  Returns:
    (k_all, v_all) with the slots written.
  """
  b, t, kvh, dh = k.shape
  blocks, block = k_all.shape[1], k_all.shape[5]
  k, v = k.astype(k_all.dtype), v.astype(v_all.dtype)
  if t == 1:  # A decode step: one slot of one block, written in place.
    at = (layer, index // block, 0, 0)
    k_all = jax.lax.dynamic_update_slice(k_all, k.transpose(0, 2, 3, 1)[None, None], (*at, 0, index % block))
    v_all = jax.lax.dynamic_update_slice(v_all, v.transpose(0, 2, 1, 3)[None, None], (*at, index % block, 0))
    return k_all, v_all
  # Several slots: rewrite the run of blocks they fall in, through the slot-major view of that run.
  width = min(blocks, -(-t // block) + 1)
  first = jnp.minimum(index // block, blocks - width)
  offset = index - first * block

  def rewrite(cache, new, to_slots, to_blocks):
    window = jax.lax.dynamic_slice(cache, (layer, first, 0, 0, 0, 0), (1, width, *cache.shape[2:]))[0]
    window = jax.lax.dynamic_update_slice(to_slots(window), new, (0, offset, 0, 0))
    return jax.lax.dynamic_update_slice(cache, to_blocks(window, block)[None], (layer, first, 0, 0, 0, 0))

  return rewrite(k_all, k, k_slots, k_blocks), rewrite(v_all, v, v_slots, v_blocks)
