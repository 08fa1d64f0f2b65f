"""The shrinking cut-off search against the whole-row reference search, and its bracket gather against numpy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.sampling import shrinking_search as ss
from ssd_jax.sampling import truncation as tr
from ssd_jax.sampling.params import RowParams, SamplingParams


def mixed_rows(rng, batch, vocab):
  return RowParams(
    temperature=jnp.asarray(rng.choice([0.0, 0.5, 0.7, 1.0, 2.0], batch), jnp.float32),
    top_k=jnp.asarray(rng.choice([0, 0, 1, 50, 700, vocab - 1], batch), jnp.int32),
    top_p=jnp.asarray(rng.choice([0.3, 0.9, 0.95, 0.999, 1.0], batch), jnp.float32),
    min_p=jnp.asarray(rng.choice([0.0, 0.0, 0.05], batch), jnp.float32),
  )


def flat_and_peaked_logits(rng, batch, vocab):
  values = (rng.normal(size=(batch, vocab)) * 3).astype(np.float32)
  values[::2, rng.choice(vocab, 40, replace=False)] += 14.0  # even rows peaked, odd rows flat
  values[1, : vocab // 3] = -np.inf  # masked vocabulary
  values[3, 100:900] = values[3, 0]  # 800 tied values
  return jnp.asarray(values)


@pytest.mark.parametrize("most", [8, 64, 4096])
def test_shrinking_search_finds_the_reference_cutoffs(most):
  rng = np.random.default_rng(most)
  batch, vocab = 16, 6_000
  logits = flat_and_peaked_logits(rng, batch, vocab)
  rows = mixed_rows(rng, batch, vocab)
  search = functools.partial(ss.shrinking_search, most=most)
  expected = tr.truncation_cutoff(logits, rows)
  np.testing.assert_array_equal(tr.truncation_cutoff(logits, rows, search), expected)
  bits = jax.random.bits(jax.random.key(most), (batch, 2), jnp.uint32)
  reference = tr.sample_reference(logits, rows, bits)
  shrunk = tr.sample_reference(logits, rows, bits, search=search)
  np.testing.assert_array_equal(shrunk.token, reference.token)
  np.testing.assert_array_equal(shrunk.cutoff, reference.cutoff)


def test_ties_wider_than_the_list_keep_the_reference_cutoff():
  # 3,000 tokens tied at the top: the bracket converges on one key that holds more than `most` entries.
  logits = jnp.concatenate([jnp.zeros((4, 3_000)), -jnp.ones((4, 1_000)) * jnp.arange(1, 5)[:, None]], axis=1)
  for params in [SamplingParams(1.0, 0, 0.5), SamplingParams(1.0, 2_000, 1.0), SamplingParams(0.7, 0, 0.999)]:
    rows = params.rows(4)
    expected = tr.truncation_cutoff(logits, rows)
    got = tr.truncation_cutoff(logits, rows, functools.partial(ss.shrinking_search, most=16))
    np.testing.assert_array_equal(got, expected)


def _top_p_search_parts(logits, rows):
  d = tr.tempered_logits(logits, rows)
  keys, limbs = ops.order_key(d), ops.mass_parts(d)
  lo = jnp.full((logits.shape[0], 1), ops.INT32_MIN)
  hi = jnp.ones_like(lo)
  target = rows.top_p[:, None] * ops.mass_value(*tr.sums_at_or_above(keys, limbs, lo))
  return keys, limbs, (lambda sums: ops.mass_value(*sums) >= target), lo, hi


def test_whole_row_steps_stop_once_the_bracket_is_short():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(4, 20_000)).astype(np.float32) * 3)
  keys, limbs, holds, lo, hi = _top_p_search_parts(logits, SamplingParams(0.7, 0, 0.95).rows(4))
  narrow_lo, narrow_hi, sums_hi = ss._narrow(keys, limbs, holds, lo, hi, 256)
  inside = np.asarray(jnp.sum((keys >= narrow_lo) & (keys < narrow_hi), axis=-1))
  assert np.all(inside <= 256) and np.all(inside > 1), inside  # short, and the short steps have work left
  np.testing.assert_array_equal(
    jnp.stack(sums_hi), jnp.stack(tr.sums_at_or_above(keys, limbs, narrow_hi))
  )  # the sums carried to hi are that set's
  expected = tr.whole_row_search(keys, limbs, holds, lo, hi)
  np.testing.assert_array_equal(ss.shrinking_search(keys, limbs, holds, lo, hi, most=256), expected)


def test_bracket_entries_are_the_rows_entries_in_vocabulary_order():
  rng = np.random.default_rng(2)
  keys = jnp.asarray(rng.integers(-1_000, 1, size=(3, 500)), jnp.int32)
  weight = jnp.asarray(rng.integers(0, 100, size=(3, 500)), jnp.int32)
  lo = jnp.asarray([[-100], [-1_000], [-3]], jnp.int32)
  hi = jnp.asarray([[-50], [-990], [-2]], jnp.int32)
  got_keys, (got_weight,) = ss.bracket_entries(keys, (weight,), lo, hi, 64)
  for r in range(3):
    inside = np.flatnonzero((np.asarray(keys[r]) >= int(lo[r, 0])) & (np.asarray(keys[r]) < int(hi[r, 0])))
    n = len(inside)
    assert 0 < n <= 64
    np.testing.assert_array_equal(got_keys[r, :n], np.asarray(keys[r])[inside])
    np.testing.assert_array_equal(got_weight[r, :n], np.asarray(weight[r])[inside])
    assert np.all(np.asarray(got_keys[r, n:]) == ops.INT32_MIN) and np.all(np.asarray(got_weight[r, n:]) == 0)
