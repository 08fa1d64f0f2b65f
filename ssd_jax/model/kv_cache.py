"""Key/value cache for incremental decoding: all layers in one pytree."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from ssd_jax.model.cache_attention import KV_LOGICAL_AXES
from ssd_jax.model.config import ModelConfig
from ssd_jax.sharding import DEFAULT_RULES, LogicalRules, logical_to_spec

# Caches built for generation hold whole blocks of this many slots: the ragged decode kernel
# (kernels/decode_attention.py) reads the cache in whole 128-slot blocks.
SLOT_MULTIPLE = 128


def cache_slots(tokens: int) -> int:
  """Slots of a generation cache that must hold `tokens` tokens (prompt width plus new tokens)."""
  return -(-tokens // SLOT_MULTIPLE) * SLOT_MULTIPLE


@flax.struct.dataclass
class KVCache:
  """Cached keys and values of every layer.

  Attributes:
    k: [layers, batch, max_len, kv_heads, head_dim] post-RoPE keys.
    v: [layers, batch, max_len, kv_heads, head_dim] values.
    valid: bool [batch, max_len]; False for empty slots and padding tokens.
    index: int32 scalar, the next slot to write (shared by all rows).
  """

  k: jax.Array
  v: jax.Array
  valid: jax.Array
  index: jax.Array

  @classmethod
  def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> KVCache:
    """An empty cache of `max_len` slots per row, in cfg.dtype unless `dtype` is given."""
    if batch <= 0 or max_len <= 0:
      raise ValueError(f"KVCache.init needs positive batch and max_len, got {batch}, {max_len}")
    shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
    dtype = cfg.compute_dtype if dtype is None else dtype
    return cls(
      k=jnp.zeros(shape, dtype),
      v=jnp.zeros(shape, dtype),
      valid=jnp.zeros((batch, max_len), bool),
      index=jnp.zeros((), jnp.int32),
    )

  @property
  def max_len(self) -> int:
    return self.k.shape[2]

  @staticmethod
  def shardings(mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> KVCache:
    """NamedShardings for each field under the same rules that shard the model."""

    def named(*names):
      return NamedSharding(mesh, logical_to_spec(names, rules))

    return KVCache(k=named(*KV_LOGICAL_AXES), v=named(*KV_LOGICAL_AXES), valid=named("batch", "length"), index=named())

  def write_valid(self, token_valid: jax.Array) -> KVCache:
    """Marks the next token_valid.shape[1] slots with token_valid (bool [batch, length])."""
    valid = jax.lax.dynamic_update_slice(self.valid, token_valid, (0, self.index))
    return self.replace(valid=valid)
