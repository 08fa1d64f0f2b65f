"""Truncated sampling from a short candidate list: the XLA path for small top-k, top-p and greedy rows.

When every sampling row has 1 <= top_k <= MAX_CANDIDATE_TOP_K (and greedy rows need only the
maximum), every token the rules can keep is among the NUM_CANDIDATES largest logits. Rows with
top-k off and top_p < 1 are served too when their top-p set fits the list: their target mass is
counted over the whole vocabulary (one more pass), and the list is trusted only if every token
outside it lies strictly below the top-p cut-off it finds (a flat row falls back). This path
then reads the vocabulary twice (row maxima of 128-wide chunks with the raw softmax normaliser,
and a gather of the best chunks) instead of the ~30 counting passes of the bisection, and runs
the rules on [batch, NUM_CANDIDATES] arrays with the same integer arithmetic as
`truncation` (`ssd_jax.kernels.candidate_rules`, which the GPU kernel runs too). So it returns the same token and cut-off as
`truncation.sample_reference` and the kernel for the same random bits, not just the same
distribution; only the log-probabilities, float sums over other orders, differ in rounding.

Ties are exact too: the list is trusted only if every token outside it is strictly below the
row's cut-off value (checked per batch); otherwise, e.g. with more than NUM_CANDIDATES tokens
tied at the top, the call falls back to the whole-vocabulary draw (`whole_vocabulary`: the
reference's, its searches finished on short lists by `shrinking_search`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.kernels.candidate_rules import candidate_sample
from ssd_jax.sampling.params import RowParams
from ssd_jax.sampling.shrinking_search import shrinking_search
from ssd_jax.sampling.truncation import TruncatedSample, sample_reference

# Candidate tokens per row, and the largest top-k served from them (the margin leaves room for
# ties at the k-th value).
NUM_CANDIDATES = 128
MAX_CANDIDATE_TOP_K = 64
# Vocabulary chunk whose maximum stands for it in the first pass.
CHUNK = 128


def whole_vocabulary(x: jax.Array, rows: RowParams, bits: jax.Array) -> TruncatedSample:
  """The reference's draw for batches the list cannot serve, its searches finished on short lists."""
  return sample_reference(x, rows, bits, search=shrinking_search)


def candidates_apply(rows: RowParams, vocab: int) -> jax.Array:
  """bool scalar: every row is greedy, has 1 <= top_k <= MAX_CANDIDATE_TOP_K (and < vocab), or has
  top-k off and top_p < 1 (whether its top-p set fits the list is checked when sampling)."""
  small_k = (rows.top_k >= 1) & (rows.top_k <= MAX_CANDIDATE_TOP_K) & (rows.top_k < vocab)
  top_p_only = ops.top_k_is_off(rows.top_k, vocab) & (rows.top_p < 1.0)
  return jnp.all((rows.temperature <= 0) | small_k | top_p_only)


def top_candidates(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The largest logits of each row, and a bound on every logit left out.

  Args:
    x: float32 [batch, vocab].

  Returns:
    (values float32 [batch, n] descending, their vocabulary indices int32 [batch, n],
    float32 [batch, 1] upper bound of the logits not among them; -inf when none is left out).
  """
  batch, vocab = x.shape
  if vocab <= NUM_CANDIDATES:
    values, index = jax.lax.top_k(x, vocab)
    return values, index, jnp.full((batch, 1), -jnp.inf, jnp.float32)
  padded = -(-vocab // CHUNK) * CHUNK
  if padded != vocab:
    x = jnp.pad(x, ((0, 0), (0, padded - vocab)), constant_values=-jnp.inf)
  chunks = x.reshape(batch, padded // CHUNK, CHUNK)
  num_chunks = chunks.shape[1]
  # The k-th largest logit is at least the k-th largest chunk maximum, so the chunks with the
  # largest maxima hold every logit that can be kept. Outputs of lax.top_k are reduced, never
  # sliced: a slice makes XLA (CPU) replace the top-k by a full sort.
  take = min(NUM_CANDIDATES + 1, num_chunks)
  if take < num_chunks:
    chunk_max, chunk_index = jax.lax.top_k(jnp.max(chunks, axis=-1), take)
    # Chunks left out have maxima at most the smallest one taken.
    outside_chunks = jnp.min(chunk_max, axis=-1, keepdims=True)
    pool = jnp.take_along_axis(chunks, chunk_index[:, :, None], axis=1).reshape(batch, take * CHUNK)
    pool_index = (chunk_index[:, :, None] * CHUNK + jnp.arange(CHUNK, dtype=jnp.int32)).reshape(batch, -1)
  else:
    outside_chunks = jnp.full((batch, 1), -jnp.inf, jnp.float32)
    pool, pool_index = x, jnp.broadcast_to(jnp.arange(padded, dtype=jnp.int32), (batch, padded))
  values, position = jax.lax.top_k(pool, NUM_CANDIDATES)
  index = jnp.take_along_axis(pool_index, position, axis=-1)
  # Pool entries not taken are at most the last value taken.
  outside = outside_chunks
  if pool.shape[1] > NUM_CANDIDATES:
    outside = jnp.maximum(outside, jnp.min(values, axis=-1, keepdims=True))
  return values, index, outside


def sample_candidates(x: jax.Array, rows: RowParams, bits: jax.Array, raw_max, raw_log_sum) -> TruncatedSample:
  """The truncated draw from the candidate list; falls back to `whole_vocabulary` where the list is not exact.

  Args:
    x: float32 [batch, vocab] logits. rows: per-row parameters ([batch] arrays) for which
      `candidates_apply` holds. bits: int32 [batch, 2] random bits.
    raw_max: float32 [batch, 1] row maxima of x. raw_log_sum: float32 [batch, 1], log sum exp(x - raw_max).

  Returns:
    TruncatedSample, equal in token and cut-off to `truncation.sample_reference`.
  """
  values, index, outside = top_candidates(x)
  column = lambda a: a[:, None]
  k_off = ops.top_k_is_off(rows.top_k, x.shape[1]) & (rows.temperature > 0)

  def vocabulary_mass():
    d = ops.tempered(x, raw_max, ops.inverse_temperature(column(rows.temperature)))
    return ops.mass_value(*(jnp.sum(limb, axis=-1, keepdims=True) for limb in ops.mass_parts(d)))

  # Rows with top-k off need the mass of the whole vocabulary: one more pass, only when there are any.
  survivors_mass = jax.lax.cond(jnp.any(k_off), vocabulary_mass, lambda: jnp.zeros_like(raw_max))
  *sample, exact = candidate_sample(
    values,
    index,
    outside,
    raw_max,
    raw_log_sum,
    *map(column, (rows.temperature, rows.top_k, rows.top_p, rows.min_p)),
    bits[:, :1],
    bits[:, 1:],
    vocab=x.shape[1],
    survivors_mass=survivors_mass,
  )
  from_candidates = TruncatedSample(*(s[:, 0] for s in sample))
  return jax.lax.cond(jnp.all(exact), lambda: from_candidates, lambda: whole_vocabulary(x, rows, bits))


@jax.jit
def sample_fast(logits: jax.Array, rows: RowParams, bits: jax.Array) -> TruncatedSample:
  """The XLA sampler: the candidate list when `candidates_apply`, else `whole_vocabulary`.

  Args:
    logits: [batch, vocab] float32 or bfloat16.
    rows: per-row parameters, arrays of shape [batch].
    bits: uint32 or int32 [batch, 2] random bits per row.

  Returns:
    TruncatedSample of [batch] arrays, equal in token and cut-off to `truncation.sample_reference`.
  """
  x = logits.astype(jnp.float32)
  bits = jax.lax.bitcast_convert_type(bits, jnp.int32)
  if bits.shape != (x.shape[0], 2):
    raise ValueError(f"bits must have shape [batch, 2] = {(x.shape[0], 2)}, got {bits.shape}")

  def small():
    raw_max = jnp.max(x, axis=-1, keepdims=True)
    raw_log_sum = jnp.log(jnp.sum(jnp.exp(x - raw_max), axis=-1, keepdims=True))
    return sample_candidates(x, rows, bits, raw_max, raw_log_sum)

  return jax.lax.cond(candidates_apply(rows, x.shape[1]), small, lambda: whole_vocabulary(x, rows, bits))
