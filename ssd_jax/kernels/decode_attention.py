"""Ragged decode attention over the KV cache: a Pallas TPU kernel that reads only each row's live blocks.

One decode step attends one new query per row to that row's cached keys. The cache has a static number
of slots, stored in blocks of 128 (`ssd_jax.model.cache_layout`: k [layers, blocks, batch, kv_heads,
head_dim, block], v [layers, blocks, batch, kv_heads, block, head_dim]) and rows share the slot index; the
kernel runs a grid of (row, step of one or more cache blocks) and row r computes only steps
first[r]..last[r]: from its first valid slot to the step of the query's slot. A row whose
query slot is invalid (it finished; the sampler writes its tokens as invalid until compaction drops it)
computes no block and returns zeros. Outside a row's range the block index is clamped into the range,
so the pipeline issues no copy for skipped blocks; on TPU the grid also ends at the query's block (a
dynamic grid bound), so empty slots past it cost no grid steps (the interpreter, which has no dynamic
bounds, walks every block and skips those). Inside it every slot is masked by `valid` and by
position, so a live row gets what `ssd_jax.model.cache_attention.cache_attention` (the XLA path and this
kernel's referee) gives; only finished rows differ, and their outputs are never used.

Queries are grouped per kv head ([kv_heads, group, head_dim] per row); each head's scores are q @ k over
[head_dim, block] key tiles and its output probs @ v over [block, head_dim] value tiles, as stored.
Scores, the running softmax and the weighted values are float32, the matmul inputs in the query's dtype,
as in the XLA path.

Off TPU the kernel runs in the Pallas interpreter (tests). `supported` says which calls it serves.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

_LANES = 128  # Slots per cache block the kernel serves, and the lane width.
# Cache slots per grid step: the largest of these that divides the cache and keeps one step's [kv_heads,
# head_dim, slots] tile within _TILE_BYTES (keys and values, double-buffered: 4 tiles in the default scoped VMEM).
_BLOCKS = (512, 256, 128)
_TILE_BYTES = 1 << 20
MASK_VALUE = -1e30


def supported(query_len: int, max_len: int, head_dim: int) -> bool:
  """Whether the kernel serves this call: one query per row, 128-slot cache blocks, lane-wide heads."""
  return query_len == 1 and max_len % _LANES == 0 and head_dim % _LANES == 0


def block_for(max_len: int, kv_heads: int, head_dim: int, itemsize: int) -> int:
  """Cache slots per grid step for a [max_len] cache of [kv_heads, head_dim] entries of `itemsize` bytes."""
  for block in _BLOCKS:
    if max_len % block == 0 and block * kv_heads * head_dim * itemsize <= _TILE_BYTES:
      return block
  return _LANES


def _kernel(
  first_ref,
  last_ref,
  layer_ref,
  index_ref,
  q_ref,
  k_ref,
  v_ref,
  valid_ref,
  o_ref,
  m_ref,
  l_ref,
  acc_ref,
  *,
  block,
  scale,
):
  """One (row, block) grid step; refs as laid out by `decode_attention`'s BlockSpecs."""
  del layer_ref  # Used by the index maps only.
  row, j = pl.program_id(0), pl.program_id(1)
  index = index_ref[0]
  num_kv_heads = q_ref.shape[0]

  @pl.when(j == 0)
  def _init():
    m_ref[...] = jnp.full(m_ref.shape, -jnp.inf, jnp.float32)
    l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when((j >= first_ref[row]) & (j <= last_ref[row]))
  def _attend():
    slots = j * block + jax.lax.broadcasted_iota(jnp.int32, (1, block), 1)
    visible = (valid_ref[...] != 0) & (slots <= index)  # [1, block]
    cache_blocks = k_ref.shape[0]  # 128-slot cache blocks in this step
    for h in range(num_kv_heads):
      q = q_ref[h]  # [group, head_dim]
      scores = jnp.concatenate(
        [jnp.dot(q, k_ref[i, h].astype(q.dtype), preferred_element_type=jnp.float32) for i in range(cache_blocks)],
        axis=-1,
      )
      scores = jnp.where(visible, scores * scale, MASK_VALUE)  # [group, block]
      running_max = m_ref[h][:, :1]  # [group, 1]
      new_max = jnp.maximum(running_max, jnp.max(scores, axis=-1, keepdims=True))
      probs = jnp.exp(scores - new_max)
      rescale = jnp.exp(running_max - new_max)
      l_ref[h] = jnp.broadcast_to(rescale * l_ref[h][:, :1] + jnp.sum(probs, axis=-1, keepdims=True), l_ref.shape[1:])
      m_ref[h] = jnp.broadcast_to(new_max, m_ref.shape[1:])
      probs = probs.astype(q.dtype)
      pv = sum(
        jnp.dot(
          probs[:, i * _LANES : (i + 1) * _LANES], v_ref[i, h].astype(q.dtype), preferred_element_type=jnp.float32
        )
        for i in range(cache_blocks)
      )  # [group, head_dim]
      acc_ref[h] = acc_ref[h] * rescale + pv

  @pl.when(j == pl.num_programs(1) - 1)
  def _finish():
    # A skipped row (its query slot invalid) never touched acc: it returns zeros, not 0 / 0.
    normaliser = l_ref[...][:, :, :1]
    o_ref[...] = (acc_ref[...] / jnp.where(normaliser > 0, normaliser, 1.0)).astype(o_ref.dtype)


def decode_attention(
  q: jax.Array,
  k_all: jax.Array,
  v_all: jax.Array,
  layer,
  index: jax.Array,
  valid: jax.Array,
  *,
  block: int | None = None,
  interpret: bool = False,
) -> jax.Array:
  """Grouped-query attention of one new query per row to the filled slots of one layer's cache.

  The query of every row sits at slot `index` (its key and value already written) and sees slot s iff
  s <= index and valid[b, s]. Same contract as `ssd_jax.model.cache_attention.cache_attention` with
  length 1.

  Args:
    q: [batch, 1, heads, head_dim].
    k_all: [layers, blocks, batch, kv_heads, head_dim, 128] and v_all [layers, blocks, batch, kv_heads, 128,
      head_dim] (`ssd_jax.model.cache_layout`); heads is a multiple of kv_heads; max_len = blocks * 128 is a
      multiple of `block`.
    layer: int or int32 scalar, the layer whose slots are read.
    index: int32 scalar, the query's slot.
    valid: bool [batch, max_len].
    block: cache slots per grid step, a multiple of 128 dividing max_len; default `block_for`.
    interpret: run in the Pallas interpreter (off TPU).

  Returns:
    [batch, 1, heads, head_dim] in q's dtype.

  Raises:
    ValueError: shapes the kernel does not serve (see `supported`).
  """
  b, t, h, dh = q.shape
  _, cache_blocks, _, kvh, _, cache_block = k_all.shape
  max_len = cache_blocks * cache_block
  if block is None:
    block = block_for(max_len, kvh, dh, k_all.dtype.itemsize)
  if cache_block != _LANES or block % _LANES or max_len % block or not supported(t, max_len, dh):
    raise ValueError(
      f"decode_attention needs one query per row, max_len a multiple of the block and head_dim a multiple of "
      f"{_LANES} (block a multiple of {_LANES}, cache blocks of {_LANES}); got q {q.shape}, cache {k_all.shape}, "
      f"block {block}"
    )
  group = h // kvh
  num_blocks = max_len // block
  qg = q.reshape(b, kvh, group, dh)
  index = jnp.asarray(index, jnp.int32)
  # Row r reads blocks first[r]..last[r]: from its first valid slot to the query's slot; a row whose query
  # slot is invalid (finished) reads none.
  first = (jnp.argmax(valid, axis=1) // block).astype(jnp.int32)
  last = jnp.where(valid[:, index], index // block, -1).astype(jnp.int32)
  scalars = (first, last, jnp.reshape(jnp.asarray(layer, jnp.int32), (1,)), jnp.reshape(index, (1,)))

  def clamped(row, j, first_ref, last_ref):
    # Blocks outside a row's range repeat the nearest block in it, so the pipeline issues no copy for them.
    return jnp.clip(j, first_ref[row], jnp.maximum(last_ref[row], first_ref[row]))

  def cache_step(row, j, first_ref, last_ref, layer_ref, index_ref):
    del index_ref
    return (layer_ref[0], clamped(row, j, first_ref, last_ref), row, 0, 0, 0)

  def valid_block(row, j, first_ref, last_ref, *_):
    return (row, 0, clamped(row, j, first_ref, last_ref))

  def per_row(row, j, *_):
    return (row, 0, 0, 0)

  per_step = block // _LANES
  k_spec = pl.BlockSpec((None, per_step, None, kvh, dh, _LANES), cache_step)
  v_spec = pl.BlockSpec((None, per_step, None, kvh, _LANES, dh), cache_step)
  row_spec = pl.BlockSpec((None, kvh, group, dh), per_row)
  kernel = functools.partial(_kernel, block=block, scale=np.float32(dh**-0.5))
  out = pl.pallas_call(
    kernel,
    out_shape=jax.ShapeDtypeStruct((b, kvh, group, dh), q.dtype),
    grid_spec=pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=len(scalars),
      grid=(b, num_blocks if interpret else index // block + 1),
      in_specs=[row_spec, k_spec, v_spec, pl.BlockSpec((None, 1, block), valid_block)],
      out_specs=row_spec,
      scratch_shapes=[
        pltpu.VMEM((kvh, group, _LANES), jnp.float32),
        pltpu.VMEM((kvh, group, _LANES), jnp.float32),
        pltpu.VMEM((kvh, group, dh), jnp.float32),
      ],
    ),
    compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
    interpret=interpret,
    name="ragged_decode_attention",
  )(*scalars, qg, k_all, v_all, valid.astype(jnp.int32)[:, None, :])
  return out.reshape(b, 1, h, dh)
