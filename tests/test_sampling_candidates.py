"""The XLA fast path (candidate list, skipped searches) against the whole-vocabulary reference,
and the top-p cut against a float64 numpy referee at real vocabulary sizes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.sampling import candidates
from ssd_jax.sampling import truncation as tr
from ssd_jax.sampling.params import RowParams, SamplingParams, as_row_params


def small_k_rows(rng, batch, max_top_k=candidates.LISTS[0].max_top_k):
  return RowParams(
    temperature=jnp.asarray(rng.choice([0.0, 1e-3, 0.7, 1.6], batch), jnp.float32),
    top_k=jnp.asarray(rng.choice([1, 2, 20, max_top_k], batch), jnp.int32),
    top_p=jnp.asarray(rng.choice([1e-7, 0.3, 0.8, 0.95, 1.0], batch), jnp.float32),
    min_p=jnp.asarray(rng.choice([0.0, 0.01, 0.2], batch), jnp.float32),
  )


def bits_for(batch, seed=0):
  return jax.random.bits(jax.random.key(seed), (batch, 2), jnp.uint32)


def assert_same_sample(fast, reference):
  np.testing.assert_array_equal(fast.token, reference.token)
  np.testing.assert_array_equal(fast.cutoff, reference.cutoff)
  np.testing.assert_allclose(fast.logprob_raw, reference.logprob_raw, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(fast.logprob_sampled, reference.logprob_sampled, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize(
  "vocab,dtype,list_index",
  # 40,000: chunks are gathered; lists 1 and 2 serve top-k past the list before them.
  [
    (300, jnp.float32, 0),
    (5_000, jnp.bfloat16, 0),
    (40_000, jnp.float32, 0),
    (40_000, jnp.float32, 1),
    (40_000, jnp.float32, 2),
  ],
)
def test_candidate_path_equals_reference(vocab, dtype, list_index):
  rng = np.random.default_rng(vocab)
  batch = 12
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * 3, dtype)
  rows = small_k_rows(rng, batch, candidates.LISTS[list_index].max_top_k)
  assert bool(candidates.candidates_apply(rows, vocab, candidates.LISTS[list_index].max_top_k))
  assert not list_index or np.any(np.asarray(rows.top_k) > candidates.LISTS[list_index - 1].max_top_k)
  bits = bits_for(batch, vocab)
  reference = tr.sample_reference(logits, rows, bits)
  assert_same_sample(candidates.sample_fast(logits, rows, bits), reference)
  assert_same_sample(lists_or_marker(logits, rows, bits), reference)  # no fallback taken
  # This list itself answers the batch (not only a longer one after it).
  x, int_bits = logits.astype(jnp.float32), jax.lax.bitcast_convert_type(bits, jnp.int32)
  listed, exact, needed = candidates.sample_candidates(
    x, rows, int_bits, candidates.LISTS[list_index], tr.row_stats(x, rows)
  )
  assert bool(exact) and float(needed) == 0
  assert_same_sample(listed, reference)


@pytest.mark.parametrize("levels", [3, 400])
def test_ties_beyond_the_list_fall_back_and_ties_inside_are_kept(levels):
  # Integer logits: 3 levels put thousands of tokens in the top tie (the list cannot hold them,
  # so the call falls back); 400 levels put a few ties at every cut-off inside the list.
  rng = np.random.default_rng(levels)
  batch, vocab = 8, 40_000
  values = rng.integers(0, levels, size=(batch, vocab)).astype(np.float32)
  values[:, ::11] = -np.inf
  logits = jnp.asarray(values)
  rows = as_row_params(
    [SamplingParams(t, k, p) for t, k, p in [(1.0, 20, 1.0), (0.0, 0, 1.0), (1.0, 5, 0.5)] * 3][:batch]
  )
  bits = bits_for(batch, 3)
  fast = candidates.sample_fast(logits, rows, bits)
  assert_same_sample(fast, tr.sample_reference(logits, rows, bits))
  kept = np.asarray(tr.kept_mask(logits, rows))
  assert kept[0].sum() >= 20 and kept[2].sum() >= 5
  if levels == 3:  # every row keeps exactly its (huge) top tie
    assert kept.sum(axis=1).min() > candidates.LISTS[-1].length
    np.testing.assert_array_equal(values[np.arange(batch), np.asarray(fast.token)], values.max(axis=1))
  greedy = np.asarray(rows.temperature) == 0
  np.testing.assert_array_equal(np.asarray(fast.token)[greedy], np.argmax(values, axis=1)[greedy])


def test_rows_outside_the_candidate_rule_use_the_reference():
  rng = np.random.default_rng(1)
  batch, vocab = 6, 3_000
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * 2, jnp.float32)
  rows = as_row_params([SamplingParams(1.0, k, p) for k, p in [(0, 1.0), (500, 1.0), (20, 0.8)] * 2])
  assert not bool(candidates.candidates_apply(rows, vocab, candidates.LISTS[-1].max_top_k))
  bits = bits_for(batch, 2)
  assert_same_sample(candidates.sample_fast(logits, rows, bits), tr.sample_reference(logits, rows, bits))


def _float64_top_p_check(logits32, temperature, top_k, top_p, kept):
  """Kept mass >= p - 1e-5, and without its least likely token < p + 1e-5 (float64, among top-k survivors)."""
  z = logits32.astype(np.float64) / temperature
  probs = np.exp(z - z.max())
  if 0 < top_k < len(z):
    probs = np.where(z >= np.sort(z)[-top_k], probs, 0.0)
  probs /= probs.sum()
  mass = probs[kept].sum()
  assert mass >= top_p - 1e-5, (top_p, mass)
  assert mass - probs[kept].min() < top_p + 1e-5, (top_p, mass, probs[kept].min())


@pytest.mark.parametrize("vocab", [151_936, 262_144])
def test_top_p_cut_is_exact_in_float64_at_full_vocabulary(vocab):
  rng = np.random.default_rng(vocab)
  settings = [(1.0, 0, 0.5), (1.0, 0, 0.95), (1.6, 0, 0.99), (0.7, 0, 0.8), (1.0, 20, 0.95), (1.6, 64, 0.8)]
  batch = len(settings)
  # A flat row (sd 1): hundreds of thousands of tiny tail tokens carry much of the mass.
  logits = (rng.normal(size=(batch, vocab)) * rng.choice([1.0, 3.0], (batch, 1))).astype(np.float32)
  rows = as_row_params([SamplingParams(t, k, p) for t, k, p in settings])
  kept = np.asarray(tr.kept_mask(jnp.asarray(logits), rows))
  for b, (temperature, top_k, top_p) in enumerate(settings):
    _float64_top_p_check(logits[b], temperature, top_k, top_p, kept[b])
  bits = bits_for(batch, 4)
  fast = candidates.sample_fast(jnp.asarray(logits), rows, bits)
  np.testing.assert_array_equal(fast.cutoff, tr.sample_reference(jnp.asarray(logits), rows, bits).cutoff)


def test_off_rules_and_greedy_batches():
  rng = np.random.default_rng(7)
  batch, vocab = 4, 20_000
  values = rng.normal(size=(batch, vocab)).astype(np.float32)
  logits = jnp.asarray(values)
  greedy = SamplingParams(temperature=0.0).rows(batch)
  out = candidates.sample_fast(logits, greedy, bits_for(batch))
  np.testing.assert_array_equal(out.token, np.argmax(values, axis=1))
  np.testing.assert_array_equal(out.logprob_sampled, 0.0)
  plain = SamplingParams(temperature=1.0).rows(batch)  # every rule off: all tokens kept
  out = candidates.sample_fast(logits, plain, bits_for(batch))
  assert np.all(np.asarray(tr.kept_mask(logits, plain)))
  np.testing.assert_array_equal(out.token, tr.sample_reference(logits, plain, bits_for(batch)).token)


def lists_or_marker(logits, rows, bits):
  """`sample_from_lists` with a fallback that marks its rows (token -1): shows whether a list answered."""
  batch = logits.shape[0]
  marker = lambda *_: tr.TruncatedSample(
    *(jnp.full((batch,), -1, dtype) for dtype in (jnp.int32, jnp.float32, jnp.float32, jnp.int32))
  )
  bits = jax.lax.bitcast_convert_type(bits, jnp.int32)
  return jax.jit(functools.partial(candidates.sample_from_lists, fallback=marker))(
    logits.astype(jnp.float32), rows, bits
  )


@pytest.mark.parametrize("vocab", [5_000, 151_936])
def test_top_p_rows_without_top_k_are_served_from_the_list_when_their_set_fits(vocab):
  rng = np.random.default_rng(vocab + 1)
  settings = [(0.7, 0, 0.95), (1.0, 0, 0.8), (1.0, 0, 0.95), (0.0, 0, 1.0), (1.0, 20, 0.9), (0.6, 0, 0.5)]
  batch = len(settings)
  # Peaked rows, as a trained model's: a few dozen plausible tokens, then a long tail far below.
  values = rng.normal(size=(batch, vocab)).astype(np.float32)
  values[:, rng.choice(vocab, 40, replace=False)] += 14.0
  logits = jnp.asarray(values)
  rows = as_row_params([SamplingParams(t, k, p) for t, k, p in settings])
  assert bool(candidates.candidates_apply(rows, vocab, candidates.LISTS[0].max_top_k))
  bits = bits_for(batch, 9)
  reference = tr.sample_reference(logits, rows, bits)
  assert_same_sample(candidates.sample_fast(logits, rows, bits), reference)
  assert_same_sample(lists_or_marker(logits, rows, bits), reference)  # no fallback taken
  # A flat row's top-p set does not fit a list: the whole batch falls back.
  flat = logits.at[2].set(jnp.asarray(rng.normal(size=vocab), jnp.float32))
  assert np.all(np.asarray(lists_or_marker(flat, rows, bits).token) == -1)
  assert_same_sample(candidates.sample_fast(flat, rows, bits), tr.sample_reference(flat, rows, bits))


@pytest.mark.parametrize("vocab", [40_000, 151_936])
def test_top_k_past_the_short_list_is_served_by_the_long_one(vocab):
  rng = np.random.default_rng(vocab + 2)
  batch = 8
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * rng.choice([1.0, 3.0], (batch, 1)), jnp.float32)
  top_k = [65, 100, 200, candidates.LISTS[-1].max_top_k, 20, 200, 0, 128]
  temperature = [1.0, 0.7, 1.6, 1.0, 1.0, 1.0, 0.0, 1e-3]
  rows = as_row_params([SamplingParams(t, k, p) for t, k, p in zip(temperature, top_k, [0.95, 1.0, 0.8] * 3)])
  assert not bool(candidates.candidates_apply(rows, vocab, candidates.LISTS[0].max_top_k))
  bits = bits_for(batch, 5)
  reference = tr.sample_reference(logits, rows, bits)
  assert_same_sample(lists_or_marker(logits, rows, bits), reference)  # no fallback taken
  assert_same_sample(candidates.sample_fast(logits, rows, bits), reference)


def test_ties_that_overflow_the_short_list_are_served_by_the_long_one():
  # 200 tokens tied at the top: more than the short list holds, so it is not exact and the long one answers.
  rng = np.random.default_rng(11)
  batch, vocab = 6, 40_000
  values = rng.integers(0, 50, size=(batch, vocab)).astype(np.float32)
  for row in values:
    row[rng.choice(vocab, 200, replace=False)] = 60.0
  logits = jnp.asarray(values)
  rows = as_row_params([SamplingParams(t, k, p) for t, k, p in [(1.0, 20, 1.0), (0.0, 0, 1.0), (1.0, 5, 0.5)] * 2])
  bits = bits_for(batch, 6)
  size = candidates.LISTS[0]
  stats = tr.row_stats(logits, rows)
  _, short_exact, _ = candidates.sample_candidates(
    logits, rows, jax.lax.bitcast_convert_type(bits, jnp.int32), size, stats
  )
  assert not bool(short_exact)
  reference = tr.sample_reference(logits, rows, bits)
  assert np.all(values[np.arange(batch), np.asarray(reference.token)] == 60.0)
  assert_same_sample(lists_or_marker(logits, rows, bits), reference)


def test_ties_past_the_288_long_list_are_served_by_the_512_long_one():
  # 200 tokens tied at the 200th value: the kept set (350) is past the 288-long list.
  rng = np.random.default_rng(12)
  batch, vocab = 4, 40_000
  values = rng.normal(size=(batch, vocab)).astype(np.float32)
  for row in values:
    order = np.argsort(row)[::-1]
    row[order[:150]] += 10.0
    row[order[150:350]] = 9.0
  logits = jnp.asarray(values)
  rows = as_row_params([SamplingParams(1.0, 200, p) for p in (1.0, 0.99, 1.0, 0.999)])
  x, bits = logits, bits_for(batch, 12)
  int_bits = jax.lax.bitcast_convert_type(bits, jnp.int32)
  stats = tr.row_stats(x, rows)
  short, long = candidates.LISTS[2], candidates.LISTS[3]
  assert short.max_top_k == long.max_top_k == 256 and short.length < 350 < long.length
  assert not bool(candidates.sample_candidates(x, rows, int_bits, short, stats)[1])
  reference = tr.sample_reference(logits, rows, bits)
  assert np.asarray(tr.kept_mask(logits, rows)).sum(axis=1).max() == 350
  assert_same_sample(candidates.sample_candidates(x, rows, int_bits, long, stats)[0], reference)
  assert_same_sample(lists_or_marker(logits, rows, bits), reference)  # no fallback taken


def test_a_short_list_bounds_the_top_p_set_and_longer_lists_too_short_are_skipped():
  rng = np.random.default_rng(13)
  batch, vocab = 4, 40_000
  # Rows 0-1 peaked (their 0.9 sets hold ~55 tokens: past the first list, inside the second);
  # rows 2-3 flat (thousands of tokens).
  values = rng.normal(size=(batch, vocab)).astype(np.float32)
  for row in values[:2]:
    row[rng.choice(vocab, 90, replace=False)] += 14.0
  rows = as_row_params([SamplingParams(1.0, 0, 0.9)] * batch)
  logits = jnp.asarray(values)
  kept = np.asarray(tr.kept_mask(logits, rows)).sum(axis=1)
  assert candidates.LISTS[0].length < kept[:2].min() and kept[:2].max() <= candidates.LISTS[1].length
  assert kept[2:].min() > candidates.LISTS[-1].length
  bits = bits_for(batch, 13)
  int_bits = jax.lax.bitcast_convert_type(bits, jnp.int32)
  first = candidates.LISTS[0]
  for part, largest in ((slice(0, 2), kept[:2].max()), (slice(2, 4), kept[2:].min())):
    part_rows = RowParams(*(a[part] for a in rows))
    stats = tr.row_stats(logits[part], part_rows)
    _, exact, needed = candidates.sample_candidates(logits[part], part_rows, int_bits[part], first, stats)
    # A lower bound: never above the largest set (which a list of that length would hold).
    assert not bool(exact) and first.length < float(needed) <= largest
  # The peaked rows' bound lets the 128-long list run; the flat rows' skips every list.
  reference = tr.sample_reference(logits[:2], RowParams(*(a[:2] for a in rows)), bits[:2])
  assert_same_sample(lists_or_marker(logits[:2], RowParams(*(a[:2] for a in rows)), bits[:2]), reference)
  flat_rows = RowParams(*(a[2:] for a in rows))
  _, _, needed = candidates.sample_candidates(
    logits[2:], flat_rows, int_bits[2:], first, tr.row_stats(logits[2:], flat_rows)
  )
  assert float(needed) > candidates.LISTS[-1].length
