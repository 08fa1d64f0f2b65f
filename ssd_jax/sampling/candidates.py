"""Truncated sampling from a short candidate list: the XLA path for top-k up to 256, top-p and greedy rows.

When every sampling row has 1 <= top_k <= a list's `max_top_k` (and greedy rows need only the
maximum), every token the rules can keep is among that list's largest logits. Rows with top-k
off and top_p < 1 are served too when their top-p set fits the list: their target mass is
counted over the whole vocabulary (one more pass), and the list is trusted only if every token
outside it lies strictly below the top-p cut-off it finds (a flat row falls back). This path
then reads the vocabulary twice (row maxima of vocabulary chunks with the raw softmax
normaliser, and a gather of the best chunks) instead of the ~30 counting passes of the
bisection, and runs the rules on [batch, length] arrays with the same integer arithmetic as
`truncation` (`ssd_jax.kernels.candidate_rules`, which the GPU kernel runs too). So it returns the same token
and cut-off as `truncation.sample_reference` and the kernel for the same random bits, not just the same
distribution; only the log-probabilities, float sums over other orders, differ in rounding.

Ties are exact too: a list is trusted only if every token outside it is strictly below the
row's cut-off value (checked per batch). A batch tries the lists shortest first (`LISTS`), the
next one when its rows' top-k is too large for a list or their ties or top-p sets overflow it,
and falls back to the whole-vocabulary draw when none serves it, e.g. with more than 512 tokens
tied at the top (`truncation.sample_whole_row`: the reference's draw, given the row maximum,
normaliser and whole-row mass the lists already counted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.kernels.candidate_rules import candidate_sample
from ssd_jax.sampling.params import RowParams
from ssd_jax.sampling.truncation import RowStats, TruncatedSample, row_stats, sample_whole_row


@dataclasses.dataclass(frozen=True)
class CandidateList:
  """One list size.

  Attributes:
    length: candidate logits kept per row.
    chunk: vocabulary chunk whose maximum stands for it in the first pass (the best length + 1
      chunks are gathered; shorter chunks make a smaller pool for the same list).
    max_top_k: the largest top-k the list serves (the rest of it leaves room for ties at the k-th value).
  """

  length: int
  chunk: int
  max_top_k: int


# Shortest first: a batch takes the first list that serves it. The first serves top-k up to 24 (the paper
# rows' 20): its pool of 33 chunks takes a quarter of the 128-long list's time at [32, 151936] on CPU.
# Top-k up to 256 takes the 288-long list (0.64x the 512-long one's time there: XLA's top-k costs
# most per element kept); the 512-long one serves only what overflows it (more than 32 ties at the
# k-th value, top-p sets of 289-512 tokens).
LISTS = (
  CandidateList(length=32, chunk=128, max_top_k=24),
  CandidateList(length=128, chunk=128, max_top_k=64),
  CandidateList(length=288, chunk=16, max_top_k=256),
  CandidateList(length=512, chunk=16, max_top_k=256),
)


def candidates_apply(rows: RowParams, vocab: int, max_top_k: int) -> jax.Array:
  """bool scalar: every row is greedy, has 1 <= top_k <= max_top_k (and < vocab), or has top-k
  off and top_p < 1 (whether its top-p set fits the list is checked when sampling)."""
  small_k = (rows.top_k >= 1) & (rows.top_k <= max_top_k) & (rows.top_k < vocab)
  top_p_only = ops.top_k_is_off(rows.top_k, vocab) & (rows.top_p < 1.0)
  return jnp.all((rows.temperature <= 0) | small_k | top_p_only)


def chunked(x: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
  """x cut into vocabulary chunks, and each chunk's maximum.

  Args:
    x: float32 [batch, vocab].
    chunk: entries per chunk; the last chunk is padded with -inf.

  Returns:
    (float32 [batch, chunks, chunk], float32 [batch, chunks]).
  """
  batch, vocab = x.shape
  padded = -(-vocab // chunk) * chunk
  if padded != vocab:
    x = jnp.pad(x, ((0, 0), (0, padded - vocab)), constant_values=-jnp.inf)
  chunks = x.reshape(batch, padded // chunk, chunk)
  return chunks, jnp.max(chunks, axis=-1)


def top_candidates(
  x: jax.Array, size: CandidateList, x_chunked: tuple[jax.Array, jax.Array] | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The largest logits of each row, and a bound on every logit left out.

  Args:
    x: float32 [batch, vocab].
    size: the list's length and chunk.
    x_chunked: `chunked(x, size.chunk)` when the caller has it.

  Returns:
    (values float32 [batch, n] descending, their vocabulary indices int32 [batch, n],
    float32 [batch, 1] upper bound of the logits not among them; -inf when none is left out),
    n = min(size.length, vocab).
  """
  batch, vocab = x.shape
  n, chunk = size.length, size.chunk
  if vocab <= n:
    values, index = jax.lax.top_k(x, vocab)
    return values, index, jnp.full((batch, 1), -jnp.inf, jnp.float32)
  chunks, chunk_max = x_chunked if x_chunked is not None else chunked(x, chunk)
  num_chunks = chunks.shape[1]
  # The k-th largest logit is at least the k-th largest chunk maximum, so the chunks with the
  # largest maxima hold every logit that can be kept. Outputs of lax.top_k are reduced, never
  # sliced: a slice makes XLA (CPU) replace the top-k by a full sort.
  take = min(n + 1, num_chunks)
  if take < num_chunks:
    chunk_max, chunk_index = jax.lax.top_k(chunk_max, take)
    # Chunks left out have maxima at most the smallest one taken.
    outside_chunks = jnp.min(chunk_max, axis=-1, keepdims=True)
    pool = jnp.take_along_axis(chunks, chunk_index[:, :, None], axis=1).reshape(batch, take * chunk)
    pool_index = (chunk_index[:, :, None] * chunk + jnp.arange(chunk, dtype=jnp.int32)).reshape(batch, -1)
  else:
    outside_chunks = jnp.full((batch, 1), -jnp.inf, jnp.float32)
    pool = chunks.reshape(batch, num_chunks * chunk)
    pool_index = jnp.broadcast_to(jnp.arange(num_chunks * chunk, dtype=jnp.int32), pool.shape)
  values, position = jax.lax.top_k(pool, n)
  index = jnp.take_along_axis(pool_index, position, axis=-1)
  # Pool entries not taken are at most the last value taken.
  outside = outside_chunks
  if pool.shape[1] > n:
    outside = jnp.maximum(outside, jnp.min(values, axis=-1, keepdims=True))
  return values, index, outside


def sample_candidates(
  x: jax.Array,
  rows: RowParams,
  bits: jax.Array,
  size: CandidateList,
  stats: RowStats,
  x_chunked: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[TruncatedSample, jax.Array, jax.Array]:
  """The truncated draw from one candidate list, whether it decided every row exactly, and how long a list must be.

  Args:
    x: float32 [batch, vocab] logits. rows: per-row parameters ([batch] arrays) for which
      `candidates_apply` holds with size.max_top_k. bits: int32 [batch, 2] random bits.
    size: the list. stats: `row_stats(x, rows)`. x_chunked: `chunked(x, size.chunk)` when the
    caller has it.

  Returns:
    (TruncatedSample of [batch] arrays, bool scalar, float32 scalar); where the bool holds, the
    sample equals `truncation.sample_reference`'s in token and cut-off. The float bounds the
    length of any list that can serve the batch (0 when no row falls short of its top-p target):
    the bound on a top-k-off row's top-p set (`candidate_rules.candidate_sample`'s needed).
  """
  values, index, outside = top_candidates(x, size, x_chunked)
  column = lambda a: a[:, None]
  *sample, exact, needed = candidate_sample(
    values,
    index,
    outside,
    stats.raw_max,
    stats.raw_log_sum,
    *map(column, (rows.temperature, rows.top_k, rows.top_p, rows.min_p)),
    bits[:, :1],
    bits[:, 1:],
    vocab=x.shape[1],
    survivors_mass=stats.survivors_mass,
  )
  return TruncatedSample(*(s[:, 0] for s in sample)), jnp.all(exact), jnp.max(needed)


Fallback = Callable[[jax.Array, RowParams, jax.Array, RowStats], TruncatedSample]


def sample_from_lists(
  x: jax.Array, rows: RowParams, bits: jax.Array, fallback: Fallback = sample_whole_row
) -> TruncatedSample:
  """The first list of `LISTS` that serves the batch exactly, else `fallback(x, rows, bits, stats)`.

  Args:
    x: float32 [batch, vocab] logits. rows: per-row parameters, [batch] arrays.
    bits: int32 [batch, 2] random bits.
    fallback: the whole-vocabulary draw, given the `row_stats` the lists used (it need not
      count them again).

  Returns:
    TruncatedSample of [batch] arrays, equal in token and cut-off to `truncation.sample_reference`
    when `fallback` is the reference's.
  """
  vocab = x.shape[1]
  dtypes = (jnp.int32, jnp.float32, jnp.float32, jnp.int32)
  sample = TruncatedSample(*(jnp.zeros(x.shape[0], dtype) for dtype in dtypes))
  served = jnp.bool_(False)
  needed = jnp.float32(0)
  # One pass gives the chunk maxima of the lists that share the first list's chunk and the row
  # maximum (a whole pass of its own otherwise).
  shared = chunked(x, LISTS[0].chunk)
  stats = row_stats(x, rows, raw_max=jnp.max(shared[1], axis=-1, keepdims=True))
  # Each list is traced once and runs only while no shorter one has served the batch and no
  # shorter one has shown a top-p set too large for it (flat rows go straight to the fallback).
  for size in LISTS:
    own = shared if size.chunk == LISTS[0].chunk else None
    sample, served, needed = jax.lax.cond(
      ~served & (needed <= size.length) & candidates_apply(rows, vocab, size.max_top_k),
      lambda size=size, own=own: sample_candidates(x, rows, bits, size, stats, own),
      lambda result=(sample, served, needed): result,
    )
  return jax.lax.cond(served, lambda: sample, lambda: fallback(x, rows, bits, stats))


@jax.jit
def sample_fast(logits: jax.Array, rows: RowParams, bits: jax.Array) -> TruncatedSample:
  """The XLA sampler: the shortest candidate list that serves the batch, else `truncation.sample_reference`.

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
  return sample_from_lists(x, rows, bits)
