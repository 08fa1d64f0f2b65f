"""The GPU sampling path (block maxima, then a candidate list per row), interpreted on CPU.

Referees: the whole-vocabulary XLA reference for tokens and cut-offs, numpy for the first pass
and for `take_largest`. The Triton lowering of the whole GPU path is checked too (it runs here;
compiling the Triton IR needs a GPU).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl

from ssd_jax.kernels import block_candidates as bc
from ssd_jax.kernels.take_largest import take_largest
from ssd_jax.sampling import truncation as tr
from ssd_jax.sampling.dispatch import sample_tokens
from ssd_jax.sampling.params import RowParams, SamplingParams
from tests.test_kernels_truncated_sampling import assert_same_sample


def mixed_rows(rng, batch):
  return RowParams(
    temperature=jnp.asarray(rng.choice([0.0, 1e-3, 0.7, 1.0, 1.6], batch), jnp.float32),
    top_k=jnp.asarray(rng.choice([1, 2, 5, 20, 24], batch), jnp.int32),
    top_p=jnp.asarray(rng.choice([1e-7, 0.3, 0.8, 0.95, 1.0], batch), jnp.float32),
    min_p=jnp.asarray(rng.choice([0.0, 0.01, 0.2], batch), jnp.float32),
  )


def columns(rows):
  return rows.temperature[:, None], rows.top_k[:, None], rows.top_p[:, None], rows.min_p[:, None]


def two_passes(logits, rows, bits, chunk_blocks=bc.CHUNK_BLOCKS):
  maxima = bc.block_maxima(logits, chunk_blocks=chunk_blocks, interpret=True)
  seeds = jax.lax.bitcast_convert_type(bits, jnp.int32)
  out = bc.sample_from_blocks(logits, *maxima, *columns(rows), seeds, chunk_blocks=chunk_blocks, interpret=True)
  return tr.TruncatedSample(*(o[:, 0] for o in out[:4])), np.asarray(out[4][:, 0])


@pytest.mark.parametrize("dtype,chunk_blocks", [(jnp.float32, 64), (jnp.bfloat16, 32)])
def test_candidate_rows_equal_the_reference(dtype, chunk_blocks):
  rng = np.random.default_rng(chunk_blocks)
  batch, vocab = 10, 128 * 300  # 300 blocks: the last chunk overhangs the row
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * 3, dtype)
  rows = mixed_rows(rng, batch)
  bits = jax.random.bits(jax.random.key(7), (batch, 2), jnp.uint32)
  sample, exact = two_passes(logits, rows, bits, chunk_blocks)
  assert exact.all()
  assert_same_sample(sample, tr.sample_reference(logits, rows, bits))


def test_ties_and_rules_the_list_cannot_serve_are_marked():
  # Integer logits put thousands of tokens in each tie: a tie at the k-th value reaches past the
  # list, so the row must not claim exactness; top-k off and top-k above the list fall back too.
  rng = np.random.default_rng(1)
  batch, vocab = 6, 128 * 40
  values = rng.integers(0, 3, size=(batch, vocab)).astype(np.float32)
  values[1] = rng.normal(size=vocab) * 3  # a row without ties
  logits = jnp.asarray(values)
  rows = RowParams(
    temperature=jnp.asarray([1.0, 1.0, 1.0, 1.0, 0.0, 1.0], jnp.float32),
    top_k=jnp.asarray([20, 20, 0, 64, 0, 1], jnp.int32),
    top_p=jnp.ones((batch,), jnp.float32),
    min_p=jnp.zeros((batch,), jnp.float32),
  )
  bits = jax.random.bits(jax.random.key(2), (batch, 2), jnp.uint32)
  sample, exact = two_passes(logits, rows, bits)
  np.testing.assert_array_equal(exact, [0, 1, 0, 0, 0, 0])
  reference = tr.sample_reference(logits, rows, bits)
  np.testing.assert_array_equal(np.asarray(sample.token)[1], np.asarray(reference.token)[1])
  # Through the dispatcher every row is the reference's: the others go to the whole-vocabulary kernel.
  assert_same_sample(sample_tokens(logits, rows, bits, impl="pallas", interpret=True, backend="gpu"), reference)


def test_masked_vocabulary_and_the_dispatcher():
  # -inf logits (a masked vocabulary, a whole chunk of it) and a mixed batch through sample_tokens.
  rng = np.random.default_rng(3)
  batch, vocab = 8, 128 * 256
  values = (rng.normal(size=(batch, vocab)) * 3).astype(np.float32)
  values[:, ::3] = -np.inf
  values[:, 64 * 128 : 128 * 128] = -np.inf
  logits = jnp.asarray(values, jnp.bfloat16)
  rows = mixed_rows(rng, batch)
  rows = rows._replace(top_k=rows.top_k.at[:2].set(0))  # whole-vocabulary rows in the batch
  bits = jax.random.bits(jax.random.key(4), (batch, 2), jnp.uint32)
  reference = tr.sample_reference(logits, rows, bits)
  assert_same_sample(sample_tokens(logits, rows, bits, impl="pallas", interpret=True, backend="gpu"), reference)
  block_max, chunk_max, chunk_sum = (np.asarray(a) for a in bc.block_maxima(logits, interpret=True))
  x = np.asarray(logits, np.float32).reshape(batch, -1, 8192)
  np.testing.assert_array_equal(block_max[:, :256], x.reshape(batch, 256, 128).max(-1))
  np.testing.assert_array_equal(chunk_max[:, 1], np.full(batch, -np.inf))  # the masked chunk
  np.testing.assert_array_equal(chunk_sum[:, 1], np.zeros(batch))
  np.testing.assert_allclose(chunk_sum[:, 0], np.exp(x[:, 0] - x[:, 0].max(-1, keepdims=True)).sum(-1), rtol=1e-5)


def _take(values, need, shape, packed):
  def kernel(values_ref, need_ref, taken_ref, position_ref, bound_ref):
    taken, position, bound = take_largest(values_ref[...], jnp.max(need_ref[...]), shape, packed=packed)
    taken_ref[...], position_ref[...], bound_ref[...] = taken, position, jnp.full((1,), bound)

  out_shape = (
    jax.ShapeDtypeStruct(shape, jnp.float32),
    jax.ShapeDtypeStruct(shape, jnp.int32),
    jax.ShapeDtypeStruct((1,), jnp.float32),
  )
  return pl.pallas_call(kernel, out_shape=out_shape, interpret=True)(values, jnp.full((1,), need, jnp.int32))


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("need", [1, 5, 9])
def test_take_largest_against_a_sort(packed, need):
  rng = np.random.default_rng(need)
  # bfloat16 values with many ties (and -inf), in a [4, 64] tile.
  values = np.asarray(jnp.asarray(rng.integers(-6, 6, size=(4, 64)) / 4, jnp.bfloat16), np.float32)
  values[0, :5] = -np.inf
  taken, position, bound = (np.asarray(a) for a in _take(jnp.asarray(values), need, (1, 16), packed))
  flat = values.reshape(-1)
  order = np.lexsort((np.arange(flat.size), -flat))  # descending, first position on ties
  kth = flat[order[need - 1]]
  count = min(16, max(need, int((flat >= kth).sum())))
  np.testing.assert_array_equal(position[0, :count], order[:count])
  np.testing.assert_array_equal(taken[0, :count], flat[order[:count]])
  assert np.all(taken[0, count:] == -np.inf) and np.all(position[0, count:] >= flat.size)
  assert bound[0] == flat[order[count]]


def test_gpu_path_lowers_to_triton():
  # Pallas -> Triton IR runs on any machine: the GPU path's kernels lower with the Triton
  # backend's parameters at the paper's shape (bf16, Qwen's vocabulary).
  batch, vocab = 256, 151_936
  rows = SamplingParams(1.0, 20, 0.95).rows(batch)
  args = (jax.ShapeDtypeStruct((batch, vocab), jnp.bfloat16), jax.ShapeDtypeStruct((batch, 2), jnp.uint32))
  for thresholds in (1, 4):  # bisection probes per pass of the whole-vocabulary kernel
    call = lambda x, bits: sample_tokens(x, rows, bits, impl="pallas", backend="gpu", thresholds=thresholds).token
    text = jax.jit(call).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    kernels = re.findall(r'name = "(\w+)", num_stages = \d+ : i32, num_warps = (\d+)', text)
    assert kernels == [("block_maxima", "4"), ("sample_from_blocks", "4"), ("truncated_sampling", "4")]
    assert "xla.gpu.triton" in text


def test_first_pass_sums_with_the_hardware_exp2():
  # The only full read of the logits: each logit's exp goes through the hardware's exp2, not the
  # longer exp routine (README's GPU table: the first kernel's time).
  logits = jax.ShapeDtypeStruct((256, 151_936), jnp.bfloat16)
  text = jax.jit(bc.block_maxima).trace(logits).lower(lowering_platforms=("cuda",)).as_text()
  assert "__nv_exp2f" in text and "__nv_expf" not in text


@pytest.mark.parametrize("offset", [-500.0, 0.0, 500.0])
def test_first_pass_normaliser_does_not_drift_with_the_logits_size(offset):
  # Softmax ignores a shift of the whole row; the chunk sums' error must too (float64 referee).
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(4, 128 * 300)) * 3 + offset, jnp.float32)
  _, chunk_max, chunk_sum = bc.block_maxima(x, interpret=True)
  chunks = bc.filled_widths(x.shape[1], bc.CHUNK_BLOCKS)[1]
  chunk_max, chunk_sum = (np.asarray(a[:, :chunks], np.float64) for a in (chunk_max, chunk_sum))
  top = chunk_max.max(-1, keepdims=True)
  ours = np.log((chunk_sum * np.exp(chunk_max - top)).sum(-1))
  exact = np.asarray(x, np.float64) - top
  np.testing.assert_allclose(ours, np.log(np.exp(exact).sum(-1)), rtol=0, atol=1e-6)
