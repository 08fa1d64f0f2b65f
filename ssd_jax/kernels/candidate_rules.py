"""The truncation rules on a row's short candidate list: one implementation for XLA and the GPU kernel.

A candidate list holds a row's largest logits in descending order with their vocabulary
indices, and a bound on every logit left out. When every token the rules can keep is on the
list, the rules need nothing else: the k-th key is the top-k cut-off, top-p is a running mass
over the list, and the draw is the exponential race over the kept candidates. Whether the list
was enough is decided per row (`exact`): every token left out must lie strictly below the
cut-off the list decides; a caller falls back to the whole-vocabulary path otherwise.

The arithmetic is `truncation_ops`, the same as the whole-vocabulary reference's, so for the
same random bits the token and cut-off are the reference's. Written with elementwise ops,
reductions and a running sum over the last axis only (no gathers), so the same function runs in XLA
(`ssd_jax.sampling.candidates`) and inside the Pallas GPU kernel
(`ssd_jax.kernels.block_candidates`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ssd_jax.kernels import race_noise
from ssd_jax.kernels import truncation_ops as ops


def _last_axis_iota(shape) -> jax.Array:
  return lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1)


def _sum(x: jax.Array) -> jax.Array:
  return jnp.sum(x, axis=-1, keepdims=True)


def _max(x: jax.Array) -> jax.Array:
  return jnp.max(x, axis=-1, keepdims=True)


def prefix_masses(limbs) -> jax.Array:
  """float32 [rows, n]: mass of candidates 0..j, for every j (integer limbs: exact in any order).

  On a list in descending key order this stands for the mass of the keys >= key_j: the two
  differ only inside a run of tied keys, and the last entry of the run carries the full mass.
  So the largest key whose prefix mass reaches a target is the largest key whose mass at or
  above it does, which is all the top-p rule asks of it (one scan instead of n^2 comparisons).
  """
  return ops.mass_value(*(jnp.cumsum(limb, axis=-1) for limb in limbs))


def candidate_sample(
  values: jax.Array,
  index: jax.Array,
  outside: jax.Array,
  raw_max: jax.Array,
  raw_log_sum: jax.Array,
  temperature: jax.Array,
  top_k: jax.Array,
  top_p: jax.Array,
  min_p: jax.Array,
  seed0: jax.Array,
  seed1: jax.Array,
  *,
  vocab: int,
  survivors_mass: jax.Array | None = None,
):
  """Temperature -> top-k -> top-p -> min-p -> draw, from a candidate list.

  Args:
    values: float32 [rows, n] the row's largest logits, descending. index: int32 [rows, n]
      their vocabulary indices (distinct within a row).
    outside: float32 [rows, 1] upper bound of every logit not in the list (-inf if none).
    raw_max: float32 [rows, 1] the row's largest logit. raw_log_sum: float32 [rows, 1],
      log sum exp(x - raw_max) over the whole row.
    temperature, top_p, min_p: float32 [rows, 1]. top_k: int32 [rows, 1].
    seed0, seed1: int32 [rows, 1] random bits.
    vocab: the row length (top-k >= vocab is off).
    survivors_mass: float32 [rows, 1] fixed-point mass of the whole row, for rows with top-k
      off; None when no such row is sampled from the list (they are then marked inexact).

  Returns:
    (token int32, logprob_raw float32, logprob_sampled float32, cutoff int32, exact bool,
    needed float32), each [rows, 1]; the first four are the reference's wherever exact holds.
    needed is a lower bound on the top-p set's size of a row with top-k off whose list falls
    short of the target mass (0 elsewhere): a longer list shorter than it cannot serve the row.
  """
  n = values.shape[-1]
  inverse_temperature = ops.inverse_temperature(temperature)
  d = ops.tempered(values, raw_max, inverse_temperature)
  keys = ops.order_key(d)
  greedy = temperature <= 0
  k_off = ops.top_k_is_off(top_k, vocab) & ~greedy
  # Greedy rows keep the maximal logits: the first candidate is the one that must be exact.
  k = jnp.where(greedy, 1, jnp.clip(top_k, 1, n))
  kth_key = _max(jnp.where(_last_axis_iota(keys.shape) == k - 1, keys, ops.INT32_MIN))
  k_cut = jnp.where(k_off, ops.INT32_MIN, kth_key)
  limbs = ops.mass_parts(d)
  in_top_k = keys >= k_cut
  top_k_mass = ops.mass_value(*(_sum(jnp.where(in_top_k, limb, 0)) for limb in limbs))
  # With top-k off the survivors are the whole vocabulary, whose mass the caller counts.
  survivors = top_k_mass if survivors_mass is None else jnp.where(k_off, survivors_mass, top_k_mass)
  # The largest candidate key >= k_cut whose mass at or above it reaches the target: the bisection's answer.
  target = top_p * survivors
  prefix = prefix_masses(limbs)
  reaches = in_top_k & (prefix >= target)
  p_cut = jnp.where(top_p < 1.0, _max(jnp.where(reaches, keys, ops.INT32_MIN)), k_cut)
  # Every token off the list weighs at most the last one listed, so a list short of the target
  # by s needs at least s / (that weight) more tokens (a whole-row search when the weight is 0).
  # Less a few ulps of the target: float32 masses, the bound must not grow past the true one by rounding.
  shortfall = target - prefix[:, -1:] - target * 2.0**-20
  last_weight = ops.mass_value(*(limb[:, -1:] for limb in limbs))
  short = k_off & (top_p < 1.0) & (shortfall > 0)
  needed = jnp.where(short, n + shortfall / last_weight, 0.0)
  # Every token off the list must be strictly below the cut the list decides: top-k's, or
  # top-p's where top-k is off (the masses above it are then whole-vocabulary masses).
  outside_key = ops.order_key(ops.tempered(outside, raw_max, inverse_temperature))
  exact = outside_key < jnp.where(k_off, p_cut, k_cut)
  if survivors_mass is None:
    exact &= ~k_off
  cutoff = ops.combine_cutoffs(k_cut, p_cut, ops.min_p_cutoff(min_p), temperature)
  kept = keys >= cutoff
  score = jnp.where(kept, race_noise.draw_score(d, race_noise.race_weights(seed0, seed1, index), greedy), -jnp.inf)
  # First vocabulary index among the best scores, as a whole-row argmax would pick.
  token = jnp.min(jnp.where(score == _max(score), index, ops.INT32_MAX), axis=-1, keepdims=True)
  drawn = index == token
  d_token = _max(jnp.where(drawn, d, -jnp.inf))
  x_token = _max(jnp.where(drawn, values, -jnp.inf))
  kept_sum = _sum(jnp.where(kept, jnp.exp(d), 0.0))
  logprob_sampled = jnp.where(greedy, 0.0, d_token - jnp.log(kept_sum))
  logprob_raw = (x_token - raw_max) - raw_log_sum
  return token, logprob_raw, logprob_sampled, cutoff, exact, needed
