"""The exponential race that draws a token: per-token noise from a counter-based hash.

Shared by the XLA reference and the kernel (see `truncation_ops`): the noise of token i of a row
depends only on the row's random bits and i, so any tiling of the vocabulary draws the same token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# lowbias32 hash constants (as signed int32, since the arithmetic is int32 with wrap-around).
_MIX_A = 0x7FEB352D
_MIX_B = 0x846CA68B - 2**32
_GOLDEN = 0x9E3779B9 - 2**32
REFINED_BUCKETS = 1 << 10  # The race's buckets nearest u = 1 resolved further (`exponential_from_bits`).


def _mix32(h: jax.Array) -> jax.Array:
  """lowbias32: a bijective 32-bit integer hash with strong avalanche."""
  h = h ^ lax.shift_right_logical(h, 16)
  h = h * _MIX_A
  h = h ^ lax.shift_right_logical(h, 15)
  h = h * _MIX_B
  return h ^ lax.shift_right_logical(h, 16)


def exponential_from_bits(bits: jax.Array, fine_bits: jax.Array) -> jax.Array:
  """E ~ Exponential(1) from two 32-bit random words (int32, any shape).

  The top 23 bits of `bits` pick u's bucket of width 2^-23 in (0, 1) and E = -log(u) at its midpoint. Where
  E is small (u near 1) a midpoint is far from exact: the smallest E would be 6e-8, so a token less likely
  than ~4e-9 of the row's top token could never win the race, and tokens up to ~1e-7 of it won too rarely.
  In the REFINED_BUCKETS buckets nearest u = 1, 24 bits of `fine_bits` place v = 1 - u inside the bucket
  (v resolved to 2^-48) and E = -log1p(-v) = v + v^2 / 2 there (the next term is below float32's precision).
  Every other bucket keeps its midpoint, so draws that involve no refined token are unchanged.
  """
  bucket = lax.shift_right_logical(bits, 9)  # 23 bits, so that adding 0.5 is exact in float32.
  u = (bucket.astype(jnp.float32) + 0.5) * (1.0 / 2**23)
  below = (2**23 - 1) - bucket  # Whole buckets between u's bucket and 1.
  fine = lax.shift_right_logical(fine_bits, 8).astype(jnp.float32)
  v = (below.astype(jnp.float32) + (fine + 0.5) * (1.0 / 2**24)) * (1.0 / 2**23)
  return jnp.where(below < REFINED_BUCKETS, v + 0.5 * v * v, -jnp.log(u))


def race_weights(seed0: jax.Array, seed1: jax.Array, index: jax.Array) -> jax.Array:
  """1 / E for E ~ Exponential(1), from per-row random bits and vocabulary indices.

  The draw is an exponential race: argmax_i exp(d_i) / E_i picks token i with probability
  proportional to exp(d_i) (the Gumbel-max trick, kept in the linear domain so that scores
  are a single product, with no add for a compiler to fuse). For a fixed row,
  bits = mix(mix(index * golden + seed0) ^ seed1) is a bijection of the index, so no two tokens
  of a row share noise; `exponential_from_bits` turns bits and fine bits into E. The fine bits come from a
  second stream, mix(mix(index * golden + seed1) ^ seed0): a hash of `bits` itself would tie them to the
  bucket, leaving each refined bucket 512 distinct values of E instead of 2^24.

  Args:
    seed0: int32 [..., 1] random bits of each row.
    seed1: int32 [..., 1] more random bits of each row.
    index: int32 [..., vocab] global vocabulary indices.

  Returns:
    float32 positive weights broadcast to the shape of index.
  """
  spread = index * _GOLDEN
  bits = _mix32(_mix32(spread + seed0) ^ seed1)
  return 1.0 / exponential_from_bits(bits, _mix32(_mix32(spread + seed1) ^ seed0))


def draw_score(d: jax.Array, race: jax.Array, greedy: jax.Array) -> jax.Array:
  """Score whose first argmax over kept tokens is the drawn token; greedy rows use d itself."""
  return jnp.where(greedy, d, jnp.exp(d) * race)
