"""Moving the live rows of a decoding batch into a smaller one, without moving rows between devices.

As rows finish, the decode loop (`decode_loop.generate_batch`) halves its batch: the live rows and their KV
cache move into a batch of half the size, so finished rows stop costing. On a mesh the batch (and the cache)
is split over the batch axes, and gathering rows by data-dependent indices across that split makes XLA
assemble the whole cache on every device (the Qwen3-4B row's generation planned at 324 GiB per chip of 95
that way). So each device compacts only its own rows: its live rows first, its share of the smaller batch
kept, inside `jax.shard_map`. A stage ends when no device holds more live rows than its share of the next
size, so an uneven spread of long rows delays a compaction; it never changes a token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ssd_jax.model.kv_cache import KVCache
from ssd_jax.sharding import LogicalRules, axes_size

MIN_COMPACT_ROWS = 8
MAX_COMPACTIONS = 2


def compaction_sizes(batch: int, shards: int = 1) -> list[int]:
  """Batch sizes the decode loop moves through as rows finish: up to MAX_COMPACTIONS halvings of batch.

  Every size is a multiple of the batch shards and at least MIN_COMPACT_ROWS. Each size compiles its own
  decode step (compile time grows with the number of sizes), so small batches are not compacted.
  """
  sizes = [batch]
  while (
    len(sizes) <= MAX_COMPACTIONS
    and sizes[-1] % 2 == 0
    and sizes[-1] // 2 >= max(MIN_COMPACT_ROWS, shards)
    and (sizes[-1] // 2) % shards == 0
  ):
    sizes.append(sizes[-1] // 2)
  return sizes


def most_live_per_shard(done: jax.Array, shards: int) -> jax.Array:
  """The largest number of live rows any batch shard holds; done: bool [batch], shards in order."""
  return jnp.max(jnp.sum(~done.reshape(shards, -1), axis=1, dtype=jnp.int32))


def _compact_rows(cache: KVCache, logits: jax.Array, rows: jax.Array, done: jax.Array, size: int):
  keep = jnp.argsort(done, stable=True)[:size]  # Live rows first, each group in its original order.
  cache = cache.replace(k=cache.k[:, :, keep], v=cache.v[:, :, keep], valid=cache.valid[keep])
  return cache, logits[keep], rows[keep]


def compact(
  cache: KVCache,
  logits: jax.Array,
  rows: jax.Array,
  done: jax.Array,
  size: int,
  *,
  mesh: Mesh | None = None,
  rules: LogicalRules | None = None,
  batch_axes: tuple[str, ...] = (),
) -> tuple[KVCache, jax.Array, jax.Array]:
  """Keeps `size` rows of the batch, the live ones, each batch shard keeping its share from its own rows.

  Args:
    cache: the KV cache of the current batch (rows along axis 2 of k and v: `cache_layout`).
    logits: float32 [batch, vocab], the next-token logits of each row.
    rows: int32 [batch], the original row of each batch position.
    done: bool [batch], finished rows; no shard may hold more live rows than size / shards.
    size: the new batch size, a multiple of the number of batch shards.
    mesh, rules, batch_axes: where the batch is split; without a mesh (or batch axes) rows move freely.

  Returns:
    (cache, logits, rows) of the `size`-row batch.
  """
  if mesh is None or not batch_axes:
    return _compact_rows(cache, logits, rows, done, size)
  shards = axes_size(mesh, batch_axes)
  if size % shards:
    raise ValueError(f"compacted batch {size} does not divide over the {shards} batch shards")
  specs = KVCache.shardings(mesh, rules)
  cache_specs = KVCache(k=specs.k.spec, v=specs.v.spec, valid=specs.valid.spec, index=P())
  row = P(batch_axes)

  def local(cache, logits, rows, done):
    return _compact_rows(cache, logits, rows, done, size // shards)

  return jax.shard_map(
    local,
    mesh=mesh,
    in_specs=(cache_specs, P(batch_axes, None), row, row),
    out_specs=(cache_specs, P(batch_axes, None), row),
    check_vma=False,
  )(cache, logits, rows, done)
