"""Block-wise attention over the filled cache against dense attention over every slot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.model.cache_attention import CACHE_BLOCK, cache_attention
from ssd_jax.model.layers import dot_product_attention


@pytest.mark.parametrize(
  "max_len,index,length",
  [
    (300, 0, 140),  # prefill across a block boundary
    (300, 250, 3),  # decode in the last, shifted block (300 is not a multiple of the block)
    (2 * CACHE_BLOCK, CACHE_BLOCK - 1, 1),  # the last slot of the first block
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
  out = jax.jit(cache_attention, static_argnums=3)(q, k_all, v_all, 1, jnp.int32(index), jnp.asarray(valid))
  assert np.all(np.isfinite(np.asarray(out)))
  np.testing.assert_allclose(np.asarray(out)[:2], np.asarray(dense)[:2], atol=2e-5, rtol=2e-5)
