"""Truncated sampling, XLA reference: temperature -> top-k -> top-p -> min-p -> sample.

This is the semantics; the Pallas kernel (`ssd_jax.kernels.truncated_sampling`) must return the same token and
cut-off for the same inputs and random bits. The rules, per row, act on the shifted tempered
logits d = (logits - max logits) * (1 / temperature) in float32, whose maximum is 0:

* top-k: keep d >= the k-th largest d. Ties at the cut-off are kept, so the kept set can
  exceed k. Off when k <= 0 or k >= vocab.
* top-p: among the top-k survivors, keep d >= t for the largest t whose kept mass still
  reaches top_p of the survivors' mass. That is the smallest most-likely prefix reaching p,
  the token that crosses p included, and ties with it kept. Mass is counted in 38-bit fixed
  point (see `truncation_ops`): exact integer sums, within 1e-6 of the float64 mass over a
  262,144-token row. Off when top_p >= 1.
* min-p: keep d >= log(min_p). Off when min_p == 0.
* draw: exponential race (Gumbel-max) over the kept tokens, the first argmax of
  exp(d) / E with E ~ Exponential(1) hashed from (row bits, index).
* temperature 0: greedy, the first maximal logit; no noise, logprob_sampled = 0.

All rules are thresholds on `order_key(d)`, so one int32 per row (the cut-off) describes the
kept set: kept <=> order_key(d) >= cut-off. Here the thresholds are found over the whole
vocabulary by bisection on the key (`row_search`: `THRESHOLDS_PER_PASS` probes per step, about
log2(vocab) / log2(THRESHOLDS_PER_PASS + 1) steps, each one pass over the row that sums and finds
the keys nearest each probe); a search no row needs (greedy, top-k off, top-p off)
is skipped. Each rule is "the largest t whose sums over {keys >= t} pass a test" (a count for
top-k, a mass for top-p). `candidates` finds the same cut-offs from a short candidate list, and
`truncation_sorted` holds a sort-based oracle.
Logits must be finite or -inf (NaN and +inf are not supported), at least one finite per row.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ssd_jax.kernels import race_noise
from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.sampling.params import RowParams
from ssd_jax.sampling.row_search import row_sums, search_cutoff, sums_at_or_above


class TruncatedSample(NamedTuple):
  """One drawn token per row.

  Attributes:
    token: int32 [batch].
    logprob_raw: float32 [batch], log-prob of the token under the raw logits (temperature 1,
      untruncated).
    logprob_sampled: float32 [batch], log-prob under the tempered, truncated, renormalised
      distribution the token was drawn from (0 for greedy rows).
    cutoff: int32 [batch], kept tokens have order_key(tempered_logits) >= cutoff.
  """

  token: jax.Array
  logprob_raw: jax.Array
  logprob_sampled: jax.Array
  cutoff: jax.Array


def tempered_logits(logits: jax.Array, rows: RowParams) -> jax.Array:
  """float32 [batch, vocab] d = (logits - row max) / temperature; each row's maximum is 0.

  The truncation rules and the draw act on d (greedy rows use temperature 1).
  """
  x = logits.astype(jnp.float32)
  return _tempered(x, jnp.max(x, axis=-1, keepdims=True), rows)


def _tempered(x: jax.Array, raw_max: jax.Array, rows: RowParams) -> jax.Array:
  return ops.tempered(x, raw_max, ops.inverse_temperature(rows.temperature)[:, None])


class RowStats(NamedTuple):
  """Whole-row quantities the candidate lists and the whole-row search share, float32 [batch, 1] each.

  Attributes:
    raw_max: the row maximum. raw_log_sum: log sum exp(x - raw_max).
    survivors_mass: the fixed-point mass of the whole row at its temperature for rows with
      top-k off and top_p < 1 (the top-p target is top_p of it); zeros when the batch has none.
  """

  raw_max: jax.Array
  raw_log_sum: jax.Array
  survivors_mass: jax.Array


def row_stats(x: jax.Array, rows: RowParams, raw_max: jax.Array | None = None) -> RowStats:
  """`RowStats` of float32 [batch, vocab] logits; the mass pass runs only for batches that need it.

  raw_max, float32 [batch, 1], is the row maximum when the caller has it (e.g. from chunk maxima).
  """
  if raw_max is None:
    raw_max = jnp.max(x, axis=-1, keepdims=True)
  raw_log_sum = jnp.log(jnp.sum(jnp.exp(x - raw_max), axis=-1, keepdims=True))
  whole_row_top_p = ops.top_k_is_off(rows.top_k, x.shape[1]) & (rows.top_p < 1.0) & (rows.temperature > 0)

  def vocabulary_mass():
    return ops.mass_value(*row_sums(ops.mass_parts(_tempered(x, raw_max, rows))))

  survivors_mass = jax.lax.cond(jnp.any(whole_row_top_p), vocabulary_mass, lambda: jnp.zeros_like(raw_max))
  return RowStats(raw_max, raw_log_sum, survivors_mass)


def _top_k_cutoff(keys: jax.Array, rows: RowParams) -> jax.Array:
  """Key of the k-th largest value per row: the largest t with count(keys >= t) >= k (INT32_MIN when off)."""
  k = rows.top_k[:, None]
  lo, hi = ops.top_k_bracket(k, rows.temperature[:, None], keys.shape[-1])
  count = lambda: search_cutoff(keys, (jnp.ones_like(keys),), lambda sums: sums[0] >= k, lo, hi)
  # The search is skipped outright when no row has top-k on.
  return jax.lax.cond(jnp.any(hi > lo + 1), count, lambda: lo)[:, 0]


def _top_p_cutoff(keys, d, top_k_cut, rows: RowParams, stats: RowStats):
  """Largest t >= top_k_cut whose mass(keys >= t) reaches top_p * mass(keys >= top_k_cut)."""
  lo, hi = ops.top_p_bracket(top_k_cut[:, None], rows.top_p[:, None], rows.temperature[:, None])
  searched = hi > lo + 1

  def mass_search():
    limbs = ops.mass_parts(d)  # inside the cond: batches without top-p never compute the weights
    # A row with top-k off keeps the whole row, whose mass `stats` holds; only top-k sets need a pass.
    top_k_on = searched & ~ops.top_k_is_off(rows.top_k[:, None], keys.shape[-1])
    survivors = jax.lax.cond(
      jnp.any(top_k_on),
      lambda: jnp.where(top_k_on, ops.mass_value(*sums_at_or_above(keys, limbs, lo)), stats.survivors_mass),
      lambda: stats.survivors_mass,
    )
    target = rows.top_p[:, None] * survivors
    return search_cutoff(keys, limbs, lambda sums: ops.mass_value(*sums) >= target, lo, hi)

  return jax.lax.cond(jnp.any(searched), mass_search, lambda: lo)[:, 0]


def _cutoff(d: jax.Array, rows: RowParams, stats: RowStats) -> jax.Array:
  """int32 [batch] cut-off key of float32 [batch, vocab] `tempered_logits` d."""
  keys = ops.order_key(d)
  k_cut = _top_k_cutoff(keys, rows)
  p_cut = _top_p_cutoff(keys, d, k_cut, rows, stats)
  return ops.combine_cutoffs(k_cut, p_cut, ops.min_p_cutoff(rows.min_p), rows.temperature)


@jax.jit
def truncation_cutoff(logits: jax.Array, rows: RowParams) -> jax.Array:
  """Per-row cut-off key of the kept set.

  Args:
    logits: [batch, vocab] float32 or bfloat16.
    rows: per-row parameters, arrays of shape [batch].

  Returns:
    int32 [batch]; token i of row b is kept iff order_key(d[b, i]) >= cutoff[b], with d from
    `tempered_logits`.
  """
  _check_shapes(logits, rows)
  x = logits.astype(jnp.float32)
  stats = row_stats(x, rows)
  return _cutoff(_tempered(x, stats.raw_max, rows), rows, stats)


@jax.jit
def kept_mask(logits: jax.Array, rows: RowParams) -> jax.Array:
  """bool [batch, vocab]: the tokens that survive truncation."""
  cut = truncation_cutoff(logits, rows)
  return ops.order_key(tempered_logits(logits, rows)) >= cut[:, None]


@jax.jit
def truncate_logits(logits: jax.Array, rows: RowParams) -> jax.Array:
  """float32 [batch, vocab] `tempered_logits` with dropped tokens set to -inf.

  softmax of the result is the distribution `sample_reference` draws from (greedy rows keep
  only their maximal logits).
  """
  d = tempered_logits(logits, rows)
  cut = truncation_cutoff(logits, rows)
  return jnp.where(ops.order_key(d) >= cut[:, None], d, -jnp.inf)


@jax.jit
def sample_reference(logits: jax.Array, rows: RowParams, bits: jax.Array) -> TruncatedSample:
  """Draws one token per row from the truncated distribution.

  Args:
    logits: [batch, vocab] float32 or bfloat16.
    rows: per-row parameters, arrays of shape [batch].
    bits: uint32 or int32 [batch, 2] random bits per row.

  Returns:
    TruncatedSample of [batch] arrays.
  """
  _check_shapes(logits, rows)
  batch, vocab = logits.shape
  if bits.shape != (batch, 2):
    raise ValueError(f"bits must have shape [batch, 2] = {(batch, 2)}, got {bits.shape}")
  x = logits.astype(jnp.float32)
  return sample_whole_row(x, rows, jax.lax.bitcast_convert_type(bits, jnp.int32), row_stats(x, rows))


def sample_whole_row(x: jax.Array, rows: RowParams, bits: jax.Array, stats: RowStats) -> TruncatedSample:
  """`sample_reference` given the row statistics a caller has already computed.

  Args:
    x: float32 [batch, vocab] logits. rows: per-row parameters, [batch] arrays.
    bits: int32 [batch, 2] random bits. stats: `row_stats(x, rows)`.

  Returns:
    TruncatedSample of [batch] arrays.
  """
  batch, vocab = x.shape
  d = _tempered(x, stats.raw_max, rows)
  cut = _cutoff(d, rows, stats)
  kept = ops.order_key(d) >= cut[:, None]
  index = jax.lax.broadcasted_iota(jnp.int32, (batch, vocab), 1)
  greedy = (rows.temperature <= 0)[:, None]
  race = race_noise.race_weights(bits[:, :1], bits[:, 1:], index)
  score = jnp.where(kept, race_noise.draw_score(d, race, greedy), -jnp.inf)
  token = _first_argmax(score)

  kept_sum = jnp.sum(jnp.where(kept, jnp.exp(d), 0.0), axis=-1)
  d_token = jnp.take_along_axis(d, token[:, None], axis=-1)[:, 0]
  logprob_sampled = jnp.where(greedy[:, 0], 0.0, d_token - jnp.log(kept_sum))
  # log_softmax at the token only, with log_softmax's arithmetic; the [batch, vocab] result is never built.
  x_token = jnp.take_along_axis(x, token[:, None], axis=-1)
  logprob_raw = (x_token - stats.raw_max)[:, 0] - stats.raw_log_sum[:, 0]
  return TruncatedSample(token, logprob_raw, logprob_sampled, cut)


def _first_argmax(score: jax.Array) -> jax.Array:
  """int32 [batch]: the first index of each row's maximum of float32 [batch, vocab] `score`, as jnp.argmax.

  A max, then the least index holding it, the index counted in float32 (exact for vocab <= MAX_VOCAB):
  XLA on CPU runs jnp.argmax's paired (value, index) reduction far slower (the rules-off draw took 2.7x as long).
  """
  top = jnp.max(score, axis=-1, keepdims=True)
  index = jax.lax.broadcasted_iota(jnp.float32, score.shape, 1)
  return jnp.min(jnp.where(score == top, index, jnp.inf), axis=-1).astype(jnp.int32)


def _check_shapes(logits: jax.Array, rows: RowParams) -> None:
  if logits.ndim != 2:
    raise ValueError(f"logits must be [batch, vocab], got shape {logits.shape}")
  if rows.temperature.shape != (logits.shape[0],):
    raise ValueError(f"params have shape {rows.temperature.shape}, expected [batch] = ({logits.shape[0]},)")
  if logits.shape[1] > ops.MAX_VOCAB:
    raise ValueError(f"vocab {logits.shape[1]} exceeds the supported maximum {ops.MAX_VOCAB}")
