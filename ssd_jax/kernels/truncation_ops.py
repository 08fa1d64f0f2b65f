"""Elementwise building blocks of truncated sampling, shared by the XLA reference and the kernel.

Everything that decides *which* token is drawn is exact and independent of summation order,
so the reference (whole rows at once) and the Pallas kernel (vocabulary tiles in VMEM) agree
bit for bit, not just approximately:

* Cut-offs are thresholds on `order_key`, an int32 whose order is the float order of the
  shifted tempered logits d = (x - max x) / T, found by bisection on that key.
* Top-k counts are integers. Top-p masses are sums of 38-bit fixed-point weights
  (`floor(exp(d) * 2**38)`), split into three 13-bit int32 limbs so that a whole 262,144-entry
  row sums without overflow. Integer sums are associative, so any blocking gives the same mass;
  the flooring loses less than 2**-38 of the top probability per token, under 1e-6 of the
  row's mass over 2**18 tokens, so the top-p cut is exact to far better than 1e-5 in mass.
* The draw is an exponential race (Gumbel-max) over the kept tokens with noise from a
  counter-based hash of (per-row random bits, vocabulary index), in `race_noise`. An argmax
  (first index on ties) has no order either.
* No float product feeds a float add, so fused multiply-adds cannot change a rounding in one
  implementation only.

Only the reported log-probabilities are float sums; they agree to float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# Top-p mass is counted in units of 2**-38 of the row's largest probability, in three limbs of
# 13 bits: the top limb is at most 2**12, the others below 2**13, so rows of up to 2**18 entries
# sum every limb to less than 2**31.
MASS_FRACTION_BITS = 38
MASS_LIMB_BITS = 13
MAX_VOCAB = 2**18


def order_key(z: jax.Array) -> jax.Array:
  """Maps float32 values to int32 keys with the same order.

  Sign-magnitude bits become two's complement, so -0.0 and +0.0 share key 0 and
  `order_key(a) >= order_key(b)` iff `a >= b` for non-NaN floats.

  Args:
    z: float32 array of any shape.

  Returns:
    int32 array of the same shape.
  """
  bits = lax.bitcast_convert_type(z.astype(jnp.float32), jnp.int32)
  return jnp.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def key_to_float(key: jax.Array) -> jax.Array:
  """Inverse of `order_key` (0 maps to +0.0)."""
  bits = jnp.where(key < 0, (-key) | INT32_MIN, key)
  return lax.bitcast_convert_type(bits, jnp.float32)


def midpoint(lo: jax.Array, hi: jax.Array) -> jax.Array:
  """floor((lo + hi) / 2) for int32 without overflow; equals lo once hi - lo <= 1."""
  return (lo & hi) + ((lo ^ hi) >> 1)


def thresholds_between(lo: jax.Array, hi: jax.Array, count: int) -> jax.Array:
  """`count` thresholds splitting [lo, hi) into count + 1 near-equal parts: int32 [rows, count].

  Threshold i is lo + floor(i * (hi - lo) / (count + 1)) for i = 1..count, counted in uint32
  because hi - lo can exceed int32; with count 1 it is `midpoint`.
  """
  width = lax.bitcast_convert_type(hi - lo, jnp.uint32)
  parts = jnp.uint32(count + 1)
  step, rest = width // parts, width % parts
  # i as an iota rather than concatenated columns: this also runs inside the Pallas kernels.
  i = lax.bitcast_convert_type(lax.broadcasted_iota(jnp.int32, (width.shape[0], count), 1) + 1, jnp.uint32)
  return lo + lax.bitcast_convert_type(step * i + rest * i // parts, jnp.int32)


def bisect_largest(probe, lo: jax.Array, hi: jax.Array, thresholds: int = 1) -> jax.Array:
  """Largest int32 t in [lo, hi) whose predicate holds, for a predicate on the set {keys >= t}.

  Contract: the predicate depends on t only through the set S(t) = {i: keys_i >= t}, shrinking
  S never turns it from false to true, it holds at lo, and hi is an exclusive upper end. Then
  the answer is unique: the largest such t is a key itself (or lo), and this returns it exactly.

  Each step probes the midpoint (or `thresholds` points splitting the bracket evenly) and also
  learns the nearest keys on either side of each, then snaps the bracket to them: [lo, hi)
  shrinks at least to 1 / (thresholds + 1) and skips empty key ranges, so the loop ends after
  about log2(keys inside the first bracket) / log2(thresholds + 1) steps. It stops when every
  row has converged.

  Args:
    probe: maps int32 t [rows, thresholds] to (holds bool, lowest key >= t, highest key < t), each
      [rows, thresholds]; the nearest keys are INT32_MAX / INT32_MIN when there are none.
    lo: int32 [rows, 1], where the predicate holds.
    hi: int32 [rows, 1], exclusive upper end.
    thresholds: probes per step. Several suit a path whose step costs its read of the row more
      than its counting (XLA on CPU); the kernels take one unless told otherwise.

  Returns:
    int32 [rows, 1].
  """

  def unconverged(bounds):
    lo, hi = bounds
    # A max rather than jnp.any: the Triton lowering has no boolean or-reduction.
    return jnp.max((midpoint(lo, hi) != lo).astype(jnp.int32)) > 0

  def step(bounds):
    lo, hi = bounds
    t = midpoint(lo, hi) if thresholds == 1 else thresholds_between(lo, hi, thresholds)
    holds, above, below = probe(t)
    # S(t) == S(above) and S(t) == S(below + 1): the predicate is the same there.
    new_lo = jnp.where(holds, jnp.minimum(above, hi - 1), lo)
    new_hi = jnp.where(holds, hi, jnp.maximum(below + 1, lo + 1))
    if thresholds > 1:
      # The predicate holds on a prefix of the ascending thresholds: lo moves to the last that
      # holds, hi to the first that does not.
      new_lo, new_hi = jnp.max(new_lo, axis=-1, keepdims=True), jnp.min(new_hi, axis=-1, keepdims=True)
    return new_lo, new_hi

  lo, _ = lax.while_loop(unconverged, step, (lo, hi))
  return lo


def nearest_keys(keys: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-entry candidates for the nearest keys around t (reduce with min and max).

  Args:
    keys: int32 [rows, n]. t: int32 [rows, 1].

  Returns:
    (keys where >= t else INT32_MAX, keys where < t else INT32_MIN), int32 [rows, n].
  """
  at_or_above = keys >= t
  return jnp.where(at_or_above, keys, INT32_MAX), jnp.where(at_or_above, INT32_MIN, keys)


def inverse_temperature(temperature: jax.Array) -> jax.Array:
  """1 / temperature, with greedy rows (temperature 0) at 1."""
  return 1.0 / jnp.where(temperature > 0, temperature, 1.0)


def tempered(x: jax.Array, raw_max: jax.Array, inverse_temp: jax.Array) -> jax.Array:
  """Shifted tempered logits d = (x - max x) * (1 / T); the row maximum of d is exactly 0.

  Written as subtract-then-multiply on purpose: no multiply feeds an add, so a compiler cannot
  fuse a product into a fused multiply-add in one implementation and not in the other; a
  division by a broadcast may likewise be rewritten as a reciprocal multiply, so there is none.

  Args:
    x: float32 [..., vocab] raw logits.
    raw_max: float32 [..., 1] maximum of x over the row.
    inverse_temp: float32 [..., 1] from `inverse_temperature`.

  Returns:
    float32 [..., vocab], <= 0.
  """
  return (x - raw_max) * inverse_temp


def mass_weight(d: jax.Array) -> jax.Array:
  """float32 exp(d) * 2**38, the fixed-point top-p weight before flooring (scaling by 2**38 is exact).

  Args:
    d: float32 [..., vocab] from `tempered`.
  """
  return jnp.exp(d) * float(2**MASS_FRACTION_BITS)


def mass_limbs(weight: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """floor(weight) = high * 2**26 + mid * 2**13 + low as three int32 limbs.

  Every step is exact in float32 (a power-of-two scaling, a floor, or the difference of a float
  and a multiple of its own ulp), so a fused multiply-add cannot change a result.

  Args:
    weight: float32 [...] from `mass_weight`, at most 2**38.

  Returns:
    (high <= 2**12, mid < 2**13, low < 2**13), int32 arrays shaped like weight.
  """
  limb = float(2**MASS_LIMB_BITS)
  high = jnp.floor(weight * (1.0 / (limb * limb)))
  rest = weight - high * (limb * limb)
  mid = jnp.floor(rest * (1.0 / limb))
  low = jnp.floor(rest - mid * limb)
  return high.astype(jnp.int32), mid.astype(jnp.int32), low.astype(jnp.int32)


def mass_parts(d: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The three int32 limbs of the fixed-point top-p weight of shifted tempered logits d."""
  return mass_limbs(mass_weight(d))


def mass_value(high_sum: jax.Array, mid_sum: jax.Array, low_sum: jax.Array) -> jax.Array:
  """float32 value of a fixed-point mass from exact integer sums of its limbs."""
  limb = float(2**MASS_LIMB_BITS)
  return (high_sum.astype(jnp.float32) * (limb * limb) + mid_sum.astype(jnp.float32) * limb) + low_sum.astype(
    jnp.float32
  )


def min_p_cutoff(min_p: jax.Array) -> jax.Array:
  """Key of the min-p threshold: keep d >= log(min_p), i.e. p >= min_p * p_max.

  min_p = 0 gives log(0) = -inf, the key of which no finite logit is below (off).
  """
  return order_key(jnp.log(min_p))


def top_k_is_off(top_k: jax.Array, vocab: int) -> jax.Array:
  return (top_k <= 0) | (top_k >= vocab)


def top_k_bracket(top_k: jax.Array, temperature: jax.Array, vocab: int) -> tuple[jax.Array, jax.Array]:
  """Bisection bracket [lo, hi) of the top-k cut-off; rows that need no search start converged.

  Rows with top-k off, and greedy rows (whose cut-off is fixed), get [INT32_MIN, INT32_MIN + 1):
  they cost no bisection step, and their result is INT32_MIN (keep all).

  Args:
    top_k: int32 [rows, 1]. temperature: float32 [rows, 1]. vocab: the row length.
  """
  skip = top_k_is_off(top_k, vocab) | (temperature <= 0)
  lo = jnp.full_like(top_k, INT32_MIN)
  # Every key is <= 0 (the row maximum of d is 0), so 1 is an exclusive upper end.
  return lo, jnp.where(skip, INT32_MIN + 1, 1)


def top_p_off(top_p: jax.Array, temperature: jax.Array) -> jax.Array:
  """Rows whose top-p rule keeps everything: top-p >= 1, or greedy."""
  return (top_p >= 1.0) | (temperature <= 0)


def top_p_bracket(top_k_cut: jax.Array, top_p: jax.Array, temperature: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Bisection bracket [top_k_cut, hi) of the top-p cut-off; rows with top-p off or greedy start converged."""
  return top_k_cut, jnp.where(top_p_off(top_p, temperature), top_k_cut + 1, 1)


def combine_cutoffs(top_k_cut, top_p_cut, min_p_cut, temperature):
  """The row's cut-off key: kept tokens have order_key(d) >= cut-off.

  Each rule only raises the cut-off, so their intersection is the largest of them. Greedy rows
  keep only the maximal logits (d == 0, key 0).
  """
  cut = jnp.maximum(jnp.maximum(top_k_cut, top_p_cut), min_p_cut)
  return jnp.where(temperature > 0, cut, 0)
