"""Key/value cache for incremental decoding: all layers in one pytree."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

import ssd_jax.model.cache_layout as cache_layout
from ssd_jax.model.config import ModelConfig
from ssd_jax.sharding import DEFAULT_RULES, LogicalRules, logical_to_spec

# Caches built for generation hold whole blocks of the layout (the ragged decode kernel,
# kernels/decode_attention.py, reads whole 128-slot blocks).
SLOT_MULTIPLE = cache_layout.BLOCK


def cache_slots(tokens: int) -> int:
  """Slots of a generation cache that must hold `tokens` tokens (prompt width plus new tokens)."""
  return -(-tokens // SLOT_MULTIPLE) * SLOT_MULTIPLE


@flax.struct.dataclass
class KVCache:
  """Cached keys and values of every layer.

  Attributes:
    k: [layers, blocks, batch, kv_heads, head_dim, block] post-RoPE keys (`cache_layout`).
    v: [layers, blocks, batch, kv_heads, block, head_dim] values; max_len = blocks * block.
    valid: bool [batch, max_len]; False for empty slots and padding tokens.
    index: int32 scalar, the next slot to write (shared by all rows).
  """

  k: jax.Array
  v: jax.Array
  valid: jax.Array
  index: jax.Array

  @classmethod
  def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> KVCache:
    """An empty cache of at least `max_len` slots per row, in cfg.dtype unless `dtype` is given.

    From one block up, the slots are rounded up to whole blocks (`cache_slots`): a cache of, say, 300 slots
    would otherwise be read in blocks of 4 (`cache_layout.block_size`). The extra slots stay invalid.
    """
    if batch <= 0 or max_len <= 0:
      raise ValueError(f"KVCache.init needs positive batch and max_len, got {batch}, {max_len}")
    if max_len >= SLOT_MULTIPLE:
      max_len = cache_slots(max_len)
    k_shape, v_shape = cache_layout.shapes(cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
    dtype = cfg.compute_dtype if dtype is None else dtype
    return cls(
      k=jnp.zeros(k_shape, dtype),
      v=jnp.zeros(v_shape, dtype),
      valid=jnp.zeros((batch, max_len), bool),
      index=jnp.zeros((), jnp.int32),
    )

  @property
  def max_len(self) -> int:
    return cache_layout.num_slots(self.k)

  @staticmethod
  def shardings(mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> KVCache:
    """NamedShardings for each field under the same rules that shard the model."""

    def named(*names):
      return NamedSharding(mesh, logical_to_spec(names, rules))

    return KVCache(
      k=named(*cache_layout.K_LOGICAL_AXES),
      v=named(*cache_layout.V_LOGICAL_AXES),
      valid=named("batch", "length"),
      index=named(),
    )

  def write_valid(self, token_valid: jax.Array) -> KVCache:
    """Marks the next token_valid.shape[1] slots with token_valid (bool [batch, length])."""
    valid = jax.lax.dynamic_update_slice(self.valid, token_valid, (0, self.index))
    return self.replace(valid=valid)
