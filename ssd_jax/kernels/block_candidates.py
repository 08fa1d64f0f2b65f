"""Truncated sampling on GPU in two Pallas (Triton) kernels: one read of the logits, then a candidate list.

The whole-vocabulary kernel (`truncated_sampling`) passes over each row about 30 times; on a GPU
it ran at 1% of the HBM-read roofline (README). Rows with a small top-k (the SSD paper's rows:
top-k 20) and greedy rows need far less:

1. `block_maxima`, grid (row, chunk of CHUNK_BLOCKS x 128 logits): the only full read. Each
   program writes the maxima of its 128-wide blocks and its chunk's maximum and softmax sum
   (sum of exp(x - chunk max)), enough for the row maximum and log-normaliser.
2. `sample_from_blocks`, one program per row: takes the k blocks with the largest maxima and
   every block tied with the k-th (the k-th largest logit is at least the k-th largest block
   maximum, so these hold every logit top-k keeps), gathers their logits, takes the k largest
   and every logit tied with the k-th (`take_largest`), and applies the rules
   (`candidate_rules.candidate_sample`, the XLA path's own implementation) to them.

A row is `exact` when its top-k is on and at most NUM_CANDIDATES (or it is greedy) and every
logit left out lies strictly below the cut-off its list decides (ties past SELECT_BLOCKS blocks or
NUM_CANDIDATES logits leave the row inexact). The caller (`ssd_jax.sampling.dispatch`) runs the
whole-vocabulary kernel for the other rows; exact rows return the reference's token and cut-off
for the same random bits.

The vocabulary must be a multiple of 128 with more than SELECT_BLOCKS blocks (`applies`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.kernels.candidate_rules import candidate_sample
from ssd_jax.kernels.take_largest import take_largest

BLOCK = 128
BLOCK_BITS = BLOCK.bit_length() - 1  # position >> BLOCK_BITS is the block, & (BLOCK - 1) the lane
# Blocks per first-pass program (8,192 logits), blocks gathered per row, candidates kept per row.
CHUNK_BLOCKS = 64
SELECT_BLOCKS = 32
NUM_CANDIDATES = 32
_LOG2_E = 1.4426950408889634


def applies(vocab: int) -> bool:
  """Whether the vocabulary has the shape the two kernels need."""
  return vocab % BLOCK == 0 and vocab // BLOCK > SELECT_BLOCKS


def _next_power_of_two(n: int) -> int:
  return 1 << (n - 1).bit_length()


def _block_maxima_kernel(x_ref, block_max_ref, chunk_max_ref, chunk_sum_ref, *, num_blocks: int, chunk_blocks: int):
  """x_ref: [chunk_blocks, 128] logits (the last chunk overhangs the row). Writes [chunk_blocks] and [1]."""
  block = pl.program_id(1) * chunk_blocks + lax.broadcasted_iota(jnp.int32, (chunk_blocks, BLOCK), 0)
  x = pltriton.load(x_ref, mask=block < num_blocks, other=-jnp.inf).astype(jnp.float32)
  block_max = jnp.max(x, axis=1)
  chunk_max = jnp.max(block_max)
  # A chunk of -inf logits (a masked vocabulary) has sum 0.
  shift = jnp.where(chunk_max > -jnp.inf, chunk_max, 0.0)
  block_max_ref[...] = block_max
  chunk_max_ref[...] = jnp.full((1,), chunk_max)
  # exp(x - shift) as 2^((x - shift) log2 e): the hardware's exp2, where exp lowers to a longer
  # library routine (this pass reads every logit). Subtracting first keeps the error relative to
  # x - shift; the fused x log2 e - shift log2 e erred by 1.5e-5 in the normaliser at logits near -500.
  chunk_sum_ref[...] = jnp.full((1,), jnp.sum(jnp.exp2((x - shift) * _LOG2_E)))


def block_maxima(logits: jax.Array, *, chunk_blocks: int = CHUNK_BLOCKS, num_warps: int = 4, interpret: bool = False):
  """The first pass: every 128-wide block's maximum and each chunk's maximum and softmax sum.

  Args:
    logits: [batch, vocab] float32 or bfloat16, vocab a multiple of 128.
    chunk_blocks: 128-wide blocks per program (a power of two).

  Returns:
    (block_max float32 [batch, width], chunk_max float32 [batch, chunk_width], chunk_sum float32
    [batch, chunk_width]). Only the first `filled_widths` columns are written (blocks past the
    row as -inf); width and chunk_width are powers of two so the second pass loads whole rows.
  """
  batch, vocab = logits.shape
  num_blocks = vocab // BLOCK
  filled, chunks = filled_widths(vocab, chunk_blocks)
  x = logits.reshape(batch, num_blocks, BLOCK)  # free: rows are contiguous
  row_chunk = pl.BlockSpec((None, 1), lambda b, c: (b, c))
  return pl.pallas_call(
    functools.partial(_block_maxima_kernel, num_blocks=num_blocks, chunk_blocks=chunk_blocks),
    out_shape=(
      jax.ShapeDtypeStruct((batch, _next_power_of_two(filled)), jnp.float32),
      jax.ShapeDtypeStruct((batch, _next_power_of_two(chunks)), jnp.float32),
      jax.ShapeDtypeStruct((batch, _next_power_of_two(chunks)), jnp.float32),
    ),
    grid=(batch, chunks),
    in_specs=[pl.BlockSpec((None, chunk_blocks, BLOCK), lambda b, c: (b, c, 0))],
    out_specs=(pl.BlockSpec((None, chunk_blocks), lambda b, c: (b, c)), row_chunk, row_chunk),
    compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
    interpret=interpret,
    name="block_maxima",
    cost_estimate=pl.CostEstimate(
      flops=3 * logits.size, transcendentals=logits.size, bytes_accessed=logits.size * logits.dtype.itemsize
    ),
  )(x)


def filled_widths(vocab: int, chunk_blocks: int) -> tuple[int, int]:
  """Columns of `block_maxima`'s outputs that it writes: (block maxima, chunk entries)."""
  chunks = pl.cdiv(vocab // BLOCK, chunk_blocks)
  return chunks * chunk_blocks, chunks


def _load_row(ref, filled: int, fill: float):
  """float32 [1, width]: a row of which the first `filled` columns were written."""
  column = lax.broadcasted_iota(jnp.int32, ref.shape, 1)
  return pltriton.load(ref, mask=column < filled, other=fill)


def _sample_from_blocks_kernel(
  temperature_ref,
  top_k_ref,
  top_p_ref,
  min_p_ref,
  seed0_ref,
  seed1_ref,
  block_max_ref,
  chunk_max_ref,
  chunk_sum_ref,
  x_ref,
  token_ref,
  logprob_raw_ref,
  logprob_sampled_ref,
  cutoff_ref,
  exact_ref,
  *,
  vocab: int,
  filled: tuple[int, int],
  packed: bool,
):
  num_blocks = vocab // BLOCK
  temperature, top_k = temperature_ref[...], top_k_ref[...]
  listed = (temperature <= 0) | ((top_k >= 1) & (top_k <= NUM_CANDIDATES))
  # Greedy rows need the maximum; rows the list cannot serve take one entry and fall back.
  need = jnp.max(jnp.where(listed & (temperature > 0), top_k, 1))
  # The k-th largest logit is at least the k-th largest block maximum: the blocks from there up
  # hold every logit top-k keeps.
  block_max = _load_row(block_max_ref, filled[0], -jnp.inf)
  _, blocks, outside_blocks = take_largest(block_max, need, (SELECT_BLOCKS,), packed=packed)
  # [SELECT_BLOCKS, 128] logits of the chosen blocks (a gather of whole 256-byte rows).
  shape = (SELECT_BLOCKS, BLOCK)
  chosen = jnp.broadcast_to(blocks[:, None], shape)
  lane = lax.broadcasted_iota(jnp.int32, shape, 1)
  pool = pltriton.load(x_ref.at[chosen, lane], mask=chosen < num_blocks, other=-jnp.inf).astype(jnp.float32)
  values, position, outside_pool = take_largest(pool, need, (1, NUM_CANDIDATES), packed=packed)
  # Pool position -> vocabulary index: the block of that pool row, and the lane.
  pool_row = lax.broadcasted_iota(jnp.int32, (1, NUM_CANDIDATES, SELECT_BLOCKS), 2)
  block_of = jnp.sum(jnp.where((position >> BLOCK_BITS)[:, :, None] == pool_row, blocks[None, None, :], 0), axis=-1)
  index = jnp.where(position < SELECT_BLOCKS * BLOCK, block_of * BLOCK + (position & (BLOCK - 1)), ops.INT32_MAX)
  outside = jnp.full((1, 1), jnp.maximum(outside_blocks, outside_pool))

  chunk_max = _load_row(chunk_max_ref, filled[1], -jnp.inf)
  raw_max = jnp.max(chunk_max, axis=-1, keepdims=True)
  chunk_sum = _load_row(chunk_sum_ref, filled[1], 0.0)
  raw_log_sum = jnp.log(jnp.sum(chunk_sum * jnp.exp(chunk_max - raw_max), axis=-1, keepdims=True))
  token, logprob_raw, logprob_sampled, cutoff, exact, _ = candidate_sample(
    values,
    index,
    outside,
    raw_max,
    raw_log_sum,
    temperature,
    top_k,
    top_p_ref[...],
    min_p_ref[...],
    seed0_ref[...],
    seed1_ref[...],
    vocab=vocab,
  )
  token_ref[...] = token
  logprob_raw_ref[...] = logprob_raw
  logprob_sampled_ref[...] = logprob_sampled
  cutoff_ref[...] = cutoff
  exact_ref[...] = (exact & listed).astype(jnp.int32)


def sample_from_blocks(
  logits,
  block_max,
  chunk_max,
  chunk_sum,
  temperature,
  top_k,
  top_p,
  min_p,
  seeds,
  *,
  chunk_blocks=CHUNK_BLOCKS,
  num_warps=4,
  interpret=False,
):
  """The second pass: candidates from the best blocks, then the rules; one program per row.

  Args:
    logits: [batch, vocab]. block_max, chunk_max, chunk_sum: from `block_maxima` with these
      chunk_blocks.
    temperature, top_p, min_p: float32 [batch, 1]. top_k: int32 [batch, 1]. seeds: int32 [batch, 2].

  Returns:
    (token int32, logprob_raw float32, logprob_sampled float32, cutoff int32, exact int32 0/1),
    each [batch, 1].
  """
  batch, vocab = logits.shape
  num_blocks = vocab // BLOCK
  row = pl.BlockSpec((1, 1), lambda b: (b, 0))
  whole = lambda a: pl.BlockSpec((1, a.shape[1]), lambda b: (b, 0))
  out = lambda dtype: jax.ShapeDtypeStruct((batch, 1), dtype)
  return pl.pallas_call(
    functools.partial(
      _sample_from_blocks_kernel,
      vocab=vocab,
      filled=filled_widths(vocab, chunk_blocks),
      packed=logits.dtype == jnp.bfloat16,
    ),
    out_shape=(out(jnp.int32), out(jnp.float32), out(jnp.float32), out(jnp.int32), out(jnp.int32)),
    grid=(batch,),
    in_specs=[row] * 6
    + [whole(block_max), whole(chunk_max), whole(chunk_sum)]
    + [pl.BlockSpec((None, num_blocks, BLOCK), lambda b: (b, 0, 0))],
    out_specs=[row] * 5,
    compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
    interpret=interpret,
    name="sample_from_blocks",
  )(
    temperature,
    top_k,
    top_p,
    min_p,
    seeds[:, :1],
    seeds[:, 1:],
    block_max,
    chunk_max,
    chunk_sum,
    logits.reshape(batch, num_blocks, BLOCK),
  )
