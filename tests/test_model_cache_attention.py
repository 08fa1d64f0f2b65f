"""Block-wise attention over the filled cache against dense attention over every slot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.model import cache_layout
from ssd_jax.model.cache_attention import cache_attention
from ssd_jax.model.layers import dot_product_attention


@pytest.mark.parametrize(
  "max_len,index,length",
  [
    (300, 0, 140),  # prefill across a block boundary
    (300, 250, 3),  # decode near the end of a cache of 4-slot blocks (300 is not a multiple of 128)
    (2 * cache_layout.BLOCK, cache_layout.BLOCK - 1, 1),  # the last slot of the first block
    (3 * cache_layout.BLOCK, 2 * cache_layout.BLOCK, 1),  # the first slot of the last block
    (40, 17, 1),  # a cache shorter than one block
  ],
)
def test_matches_dense_attention_over_the_whole_cache(max_len, index, length):
  rng = np.random.default_rng(max_len + index)
  batch, layers, heads, kv_heads, head_dim = 3, 2, 4, 2, 16
  k_all = jnp.asarray(rng.normal(size=(layers, batch, max_len, kv_heads, head_dim)), jnp.float32)
  v_all = jnp.asarray(rng.normal(size=(layers, batch, max_len, kv_heads, head_dim)), jnp.float32)
  q = jnp.asarray(rng.normal(size=(batch, length, heads, head_dim)), jnp.float32)
  valid = rng.random((batch, max_len)) < 0.8
  valid[:, index : index + length] = True
  valid[2, : index + length] = False  # a row that sees nothing (padding): finite, meaningless
  valid[:, index + length :] = rng.random((batch, max_len - index - length)) < 0.5  # stale slots past the end
  slots = np.arange(max_len)
  mask = (slots[None, :] <= index + np.arange(length)[:, None])[None] & valid[:, None, :]
  dense = dot_product_attention(q, k_all[1], v_all[1], jnp.asarray(mask))
  block = cache_layout.block_size(max_len)
  k_blocks, v_blocks = cache_layout.k_blocks(k_all, block), cache_layout.v_blocks(v_all, block)
  out = jax.jit(cache_attention, static_argnums=3)(q, k_blocks, v_blocks, 1, jnp.int32(index), jnp.asarray(valid))
  assert np.all(np.isfinite(np.asarray(out)))
  np.testing.assert_allclose(np.asarray(out)[:2], np.asarray(dense)[:2], atol=2e-5, rtol=2e-5)
