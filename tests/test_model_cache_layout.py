"""The blocked cache layout: writes land in the slots a slot-major cache would hold them in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.model import cache_layout


def test_blocks_of_a_cache():
  assert [cache_layout.block_size(s) for s in (128, 1152, 300, 40, 17)] == [128, 128, 4, 8, 1]
  k_shape, v_shape = cache_layout.shapes(2, 3, 384, 4, 16)
  assert k_shape == (2, 3, 3, 4, 16, 128) and v_shape == (2, 3, 3, 4, 128, 16)
  x = jnp.arange(2 * 3 * 384 * 4 * 16, dtype=jnp.float32).reshape(2, 3, 384, 4, 16)
  k, v = cache_layout.k_blocks(x, 128), cache_layout.v_blocks(x, 128)
  assert k.shape == k_shape and v.shape == v_shape
  # Slot 130 of row 1, kv head 2: block 1, position 2 in it.
  np.testing.assert_array_equal(k[0, 1, 1, 2, :, 2], x[0, 1, 130, 2])
  np.testing.assert_array_equal(v[0, 1, 1, 2, 2, :], x[0, 1, 130, 2])
  np.testing.assert_array_equal(cache_layout.k_slots(k), x)
  np.testing.assert_array_equal(cache_layout.v_slots(v), x)
  assert cache_layout.num_slots(k) == 384


@pytest.mark.parametrize(
  "slots,index,length",
  [
    (384, 0, 1),
    (384, 255, 1),  # the last slot of a block
    (384, 0, 300),  # a prefill over three blocks
    (384, 120, 20),  # across a block boundary
    (384, 130, 254),  # up to the last slot: the run of blocks is clipped at the end
    (40, 3, 30),  # 8-slot blocks
  ],
)
def test_write_equals_a_slot_major_write(slots, index, length):
  rng = np.random.default_rng(slots + index + length)
  layers, batch, kvh, dh = 3, 2, 2, 8
  full = rng.normal(size=(layers, batch, slots, kvh, dh)).astype(np.float32)
  new_k, new_v = (rng.normal(size=(batch, length, kvh, dh)).astype(np.float32) for _ in range(2))
  block = cache_layout.block_size(slots)
  k_all, v_all = cache_layout.k_blocks(jnp.asarray(full), block), cache_layout.v_blocks(jnp.asarray(full), block)
  write = jax.jit(cache_layout.write)
  k_all, v_all = write(k_all, v_all, jnp.int32(1), jnp.int32(index), jnp.asarray(new_k), jnp.asarray(new_v))
  want_k, want_v = full.copy(), full.copy()
  want_k[1, :, index : index + length] = new_k
  want_v[1, :, index : index + length] = new_v
  np.testing.assert_array_equal(cache_layout.k_slots(k_all), want_k)
  np.testing.assert_array_equal(cache_layout.v_slots(v_all), want_v)
