"""Fused truncated sampling as one Pallas kernel: temperature, top-k, top-p, min-p and the draw.

Each grid step owns a block of rows. Their logits come from HBM once; every later pass loops
over vocabulary tiles on chip. On TPU the block lives in VMEM next to two scratch rows (order
keys and unfloored fixed-point top-p weights) written in the first pass, so the bisection passes read
VMEM, not HBM. The GPU (Triton) variant has no scratch and recomputes keys and weights from
the row, which stays in L2.

The arithmetic is `ssd_jax.kernels.truncation_ops`, the same as the XLA reference's, and the
decisions are exact integer counts, integer masses and an argmax, so the kernel and
`ssd_jax.sampling.truncation.sample_reference` return the same token and cut-off for the same
random bits (log-probabilities agree to float32 rounding, the sums being blocked differently).

Pass plan per row block, each pass a loop over the vocabulary tiles:
  1. max of the raw logits;                                 (HBM -> VMEM, the only HBM read)
  2. keys and weights into scratch, raw softmax normaliser;
  3. top-k: bisection passes counting keys >= t (about log2(vocab), at most 32; none for rows
     with top-k off or greedy);
  4. top-p: 1 + bisection passes summing weights of keys >= t (about log2 of the top-k
     survivors, or of the vocabulary without top-k; none when every row of the block has top-p
     off or is greedy);
  5. draw: exponential race over keys >= cut-off, truncated normaliser;
  6. the drawn token's logit.
With `thresholds` n > 1, each bisection pass of 3 and 4 counts n thresholds at once, and there are
about 1 / log2(n + 1) as many passes.

The kernel always searches the whole vocabulary. The XLA path (`ssd_jax.sampling.candidates`)
finds the same cut-offs from a short candidate list when top-k is small; both give the same
token and cut-off for the same random bits.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from ssd_jax.kernels import race_noise
from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.kernels.row_tiles import RowTiles, row_sum, stack_columns, threshold_columns, tile_loop

# The first index beyond any vocabulary; marks "no candidate yet" in the running argmax.
_NO_INDEX = 2**30


def _truncated_sampling_kernel(*refs, vocab: int, tile: int, thresholds: int, skip: bool):
  """Skips a row block whose rows are all marked answered (`skip` input, 1 = answered)."""
  sample_rows = functools.partial(_truncated_sampling_rows, vocab=vocab, tile=tile, thresholds=thresholds)
  if not skip:
    return sample_rows(*refs)
  skip_ref, *refs = refs

  @pl.when(jnp.min(skip_ref[...]) == 0)
  def _():
    sample_rows(*refs)


def _truncated_sampling_rows(
  temperature_ref,
  top_k_ref,
  top_p_ref,
  min_p_ref,
  seed0_ref,
  seed1_ref,
  x_ref,
  token_ref,
  logprob_raw_ref,
  logprob_sampled_ref,
  cutoff_ref,
  *scratch,
  vocab: int,
  tile: int,
  thresholds: int,
):
  rows, block_vocab = x_ref.shape
  num_tiles = block_vocab // tile
  shape = (rows, tile)
  temperature = temperature_ref[...]
  key_ref, weight_ref = scratch if scratch else (None, None)
  tiles = RowTiles(x_ref, key_ref, weight_ref, tile, vocab)

  # 1. Row maxima of the raw logits.
  raw_max = jnp.max(
    tile_loop(num_tiles, lambda j, acc: jnp.maximum(acc, tiles.raw(j)), jnp.full(shape, -jnp.inf, jnp.float32)),
    axis=-1,
    keepdims=True,
  )
  tiles.raw_max = raw_max
  tiles.inverse_temperature = ops.inverse_temperature(temperature)

  # 2. Scratch (TPU) and the raw softmax normaliser.
  def fill(j, acc):
    if key_ref is not None:
      d = tiles.tempered(j)
      key_ref[:, tiles.window(j)] = ops.order_key(d)
      weight_ref[:, tiles.window(j)] = ops.mass_weight(d)
    return acc + jnp.exp(tiles.raw(j) - raw_max)

  raw_sum = row_sum(tile_loop(num_tiles, fill, jnp.zeros(shape, jnp.float32)))
  # 3. Top-k.
  top_k = top_k_ref[...]
  init = (jnp.full(shape, ops.INT32_MAX, jnp.int32), jnp.full(shape, ops.INT32_MIN, jnp.int32))

  def nearest(keys, t, acc):
    above, below = ops.nearest_keys(keys, t)
    return jnp.minimum(acc[0], above), jnp.maximum(acc[1], below)

  def finish(above, below):
    return (jnp.min(above, axis=-1, keepdims=True), jnp.max(below, axis=-1, keepdims=True))

  def sums_at_least(ts, weights, count, with_nearest):
    """Per threshold in `ts` ([rows, 1] each), one pass for all: each of the `count` int32 weights of
    `weights(j)` (tile j) summed over the keys >= it, int32 [rows, 1] each, and with_nearest its nearest keys."""

    def body(j, acc):
      keys = tiles.keys(j)
      parts = weights(j)
      out = []
      for ti, (sums, bounds) in zip(ts, acc):
        kept = keys >= ti
        sums = tuple(sum_ + jnp.where(kept, part, 0) for sum_, part in zip(sums, parts))
        out.append((sums, nearest(keys, ti, bounds) if with_nearest else ()))
      return tuple(out)

    each = ((jnp.zeros(shape, jnp.int32),) * count, init if with_nearest else ())
    acc = tile_loop(num_tiles, body, (each,) * len(ts))
    return [(tuple(row_sum(sum_) for sum_ in sums), *(finish(*bounds) if with_nearest else ())) for sums, bounds in acc]

  def probe_count(t):
    found = sums_at_least(threshold_columns(t), lambda j: (1,), 1, True)  # a count: weight 1 each
    return stack_columns([(sums[0] >= top_k, above, below) for sums, above, below in found])

  k_cut = ops.bisect_largest(probe_count, *ops.top_k_bracket(top_k, temperature, vocab), thresholds)

  # 4. Top-p among the top-k survivors.
  top_p = top_p_ref[...]

  def survivor_mass():
    ((sums,),) = sums_at_least([k_cut], tiles.weight_parts, 3, False)
    return ops.mass_value(*sums)

  # A block whose rows all have top-p off (greedy, top_p >= 1) skips the survivor pass: its bisection
  # starts converged and never reads the target.
  skip_top_p = jnp.min(ops.top_p_off(top_p, temperature).astype(jnp.int32)) == 1
  target = top_p * jax.lax.cond(skip_top_p, lambda: jnp.zeros_like(top_p), survivor_mass)

  def probe_mass(t):
    found = sums_at_least(threshold_columns(t), tiles.weight_parts, 3, True)
    return stack_columns([(ops.mass_value(*sums) >= target, above, below) for sums, above, below in found])

  p_cut = ops.bisect_largest(probe_mass, *ops.top_p_bracket(k_cut, top_p, temperature), thresholds)

  cutoff = ops.combine_cutoffs(k_cut, p_cut, ops.min_p_cutoff(min_p_ref[...]), temperature)

  # 5. The draw; per tile position keep the best (first on ties) candidate.
  greedy = temperature <= 0
  seed0, seed1 = seed0_ref[...], seed1_ref[...]

  def draw(j, carry):
    best_score, best_index, kept_sum = carry
    d = tiles.tempered(j)
    kept = tiles.keys(j) >= cutoff
    index = tiles.index(j)
    race = race_noise.race_weights(seed0, seed1, index)
    score = jnp.where(kept, race_noise.draw_score(d, race, greedy), -jnp.inf)
    better = score > best_score
    return (
      jnp.where(better, score, best_score),
      jnp.where(better, index, best_index),
      kept_sum + jnp.where(kept, jnp.exp(d), 0.0),
    )

  best_score, best_index, kept_sum = tile_loop(
    num_tiles,
    draw,
    (jnp.full(shape, -jnp.inf, jnp.float32), jnp.full(shape, _NO_INDEX, jnp.int32), jnp.zeros(shape, jnp.float32)),
  )
  top = jnp.max(best_score, axis=-1, keepdims=True)
  token = jnp.min(jnp.where(best_score == top, best_index, _NO_INDEX), axis=-1, keepdims=True)

  # 6. The drawn token's logit (a row-dependent lane cannot be indexed directly).
  def pick(j, acc):
    return jnp.maximum(acc, jnp.where(tiles.index(j) == token, tiles.raw(j), -jnp.inf))

  raw_token = jnp.max(tile_loop(num_tiles, pick, jnp.full(shape, -jnp.inf, jnp.float32)), axis=-1, keepdims=True)
  d_token = ops.tempered(raw_token, raw_max, tiles.inverse_temperature)
  token_ref[...] = token
  cutoff_ref[...] = cutoff
  logprob_raw_ref[...] = (raw_token - raw_max) - jnp.log(raw_sum)
  logprob_sampled_ref[...] = jnp.where(greedy, 0.0, d_token - jnp.log(row_sum(kept_sum)))


def vmem_bytes(block_rows: int, block_vocab: int, itemsize: int) -> int:
  """VMEM the TPU kernel needs: a double-buffered logits block plus two 4-byte scratch rows (keys, weights)."""
  return block_rows * block_vocab * (2 * itemsize + 2 * 4)


def truncated_sampling_pallas(
  logits: jax.Array,
  temperature,
  top_k,
  top_p,
  min_p,
  seeds,
  *,
  block_rows: int,
  tile: int,
  backend: str,
  interpret: bool = False,
  skip: jax.Array | None = None,
  thresholds: int = 1,
):
  """Runs the kernel.

  Blocks are [block_rows, vocab rounded up to tile]; they overhang the array at the edges
  instead of padding it, which would cost another pass over HBM. Overhanging columns are
  masked to -inf inside the kernel; overhanging rows compute garbage that is never stored.

  Args:
    logits: [batch, vocab] float32 or bfloat16.
    temperature, top_p, min_p: float32 [batch, 1]. top_k: int32 [batch, 1].
    seeds: int32 [batch, 2] random bits.
    block_rows: rows per grid step.
    tile: vocabulary entries per inner-loop step (a multiple of 128).
    backend: "tpu" (VMEM scratch, Mosaic) or "gpu" (no scratch, Triton).
    interpret: run the kernel in the Pallas interpreter (CPU tests).
    skip: int32 [batch, 1], 1 for rows answered elsewhere: a row block with only such rows
      does no work and its outputs are left undefined.
    thresholds: probes per bisection pass (`truncation_ops.bisect_largest`). More take fewer
      passes over the row, each counting more; the same token and cut-off either way.

  Returns:
    (token int32, logprob_raw float32, logprob_sampled float32, cutoff int32), each [batch, 1].
  """
  batch, vocab = logits.shape
  block_vocab = pl.cdiv(vocab, tile) * tile
  row_spec = pl.BlockSpec((block_rows, 1), lambda i: (i, 0))
  if thresholds < 1:
    raise ValueError(f"thresholds must be >= 1, got {thresholds}")
  kernel = functools.partial(
    _truncated_sampling_kernel, vocab=vocab, tile=tile, thresholds=thresholds, skip=skip is not None
  )
  out_shape = (
    jax.ShapeDtypeStruct((batch, 1), jnp.int32),
    jax.ShapeDtypeStruct((batch, 1), jnp.float32),
    jax.ShapeDtypeStruct((batch, 1), jnp.float32),
    jax.ShapeDtypeStruct((batch, 1), jnp.int32),
  )
  extra = {}
  if backend == "tpu":
    need = vmem_bytes(block_rows, block_vocab, logits.dtype.itemsize)
    extra = dict(
      scratch_shapes=[
        pltpu.VMEM((block_rows, block_vocab), jnp.int32),
        pltpu.VMEM((block_rows, block_vocab), jnp.float32),
      ],
      compiler_params=pltpu.CompilerParams(
        dimension_semantics=("parallel",), vmem_limit_bytes=max(32 * 2**20, need + 16 * 2**20)
      ),
    )
  elif backend == "gpu":
    # Named explicitly: without Triton's parameters some jax versions lower to Mosaic GPU.
    extra = dict(compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1))
  else:
    raise ValueError(f"backend must be 'tpu' or 'gpu', got {backend!r}")
  # Per element: ~8 ops per top-k pass, ~14 per top-p pass, ~40 in the other passes; about
  # 20 top-k and 8 top-p passes for SSD-style settings.
  cost = pl.CostEstimate(
    flops=logits.size * (8 * 20 + 14 * 8 + 40),
    transcendentals=logits.size * 5,
    bytes_accessed=logits.size * logits.dtype.itemsize + batch * 40,
  )
  call = pl.pallas_call(
    kernel,
    out_shape=out_shape,
    grid=(pl.cdiv(batch, block_rows),),
    in_specs=[row_spec] * (6 if skip is None else 7) + [pl.BlockSpec((block_rows, block_vocab), lambda i: (i, 0))],
    out_specs=[row_spec] * 4,
    interpret=interpret,
    name="truncated_sampling",
    cost_estimate=cost,
    **extra,
  )
  skips = () if skip is None else (skip,)
  return call(*skips, temperature, top_k, top_p, min_p, seeds[:, :1], seeds[:, 1:], logits)
