"""Grouped matmul: tiled XLA and the megablox Pallas kernel (interpreted on CPU) against lax.ragged_dot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.kernels.grouped_matmul import grouped_matmul, resolve_grouped_matmul_impl


def _problem(m=200, k=64, n=48, groups=5, seed=0):
  rng = np.random.default_rng(seed)
  lhs = jnp.asarray(rng.standard_normal((m, k)), jnp.float32)
  rhs = jnp.asarray(rng.standard_normal((groups, k, n)), jnp.float32)
  sizes = jnp.asarray([70, 0, 1, 90, 29], jnp.int32)  # An empty group; 10 rows left over.
  return lhs, rhs, sizes


def test_ragged_dot_against_per_group_numpy():
  lhs, rhs, sizes = _problem()
  out = np.asarray(grouped_matmul(lhs, rhs, sizes, "ragged_dot"))
  start = 0
  for g, size in enumerate(np.asarray(sizes)):
    want = np.asarray(lhs[start : start + size], np.float64) @ np.asarray(rhs[g], np.float64)
    np.testing.assert_allclose(out[start : start + size], want, atol=1e-4, rtol=1e-5)
    start += size
  np.testing.assert_array_equal(out[start:], 0)


@pytest.mark.parametrize("impl", ["tiled", "megablox"])
@pytest.mark.parametrize("sizes", [[70, 0, 1, 90, 29], [0, 0, 190, 0, 0], [64, 64, 0, 64, 8]])
def test_impl_matches_ragged_dot_values_and_gradients(impl, sizes):
  lhs, rhs, _ = _problem(seed=1)
  sizes = jnp.asarray(sizes, jnp.int32)
  cotangent = jnp.asarray(np.random.default_rng(2).standard_normal((lhs.shape[0], rhs.shape[2])), jnp.float32)

  def loss(lhs, rhs, impl):
    return jnp.sum(grouped_matmul(lhs, rhs, sizes, impl) * cotangent)

  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
  (want, (want_lhs, want_rhs)) = grad(lhs, rhs, "ragged_dot")
  (got, (got_lhs, got_rhs)) = grad(lhs, rhs, impl)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got_lhs), np.asarray(want_lhs), atol=1e-4, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got_rhs), np.asarray(want_rhs), atol=1e-4, rtol=1e-5)


def test_impl_names():
  assert resolve_grouped_matmul_impl("auto", 256, 128) == "tiled"  # CPU.
  assert resolve_grouped_matmul_impl("auto", 2048, 768, "tpu") == "megablox"
  # The kernel's backward swaps k and n, so a side that is not whole 128-lane tiles cannot be blocked on TPU.
  assert resolve_grouped_matmul_impl("auto", 128, 32, "tpu") == "tiled"
  assert resolve_grouped_matmul_impl("megablox", 128, 32, "tpu") == "megablox"  # Asked for by name.
  with pytest.raises(ValueError, match="grouped matmul implementation must be one of"):
    resolve_grouped_matmul_impl("einsum", 128, 128)
  with pytest.raises(ValueError, match="grouped_matmul needs lhs"):
    grouped_matmul(jnp.zeros((4, 3)), jnp.zeros((2, 5, 6)), jnp.zeros((2,), jnp.int32))
