"""The XLA reference of truncated sampling against independent referees.

Referees: a sort-based oracle, numpy brute force, Hugging Face logits warpers, and the exact
truncated distribution (frequencies over many draws).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from ssd_jax.kernels import race_noise
from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.sampling import row_search
from ssd_jax.sampling import truncation as tr
from ssd_jax.sampling.params import RowParams, SamplingParams, as_row_params
from ssd_jax.sampling.truncation_sorted import sorted_kept_mask


def random_rows(rng, batch, vocab):
  return RowParams(
    temperature=jnp.asarray(rng.choice([0.0, 0.3, 1.0, 1.6], batch), jnp.float32),
    top_k=jnp.asarray(rng.choice([0, 1, 3, 20, vocab - 1, vocab, vocab + 7], batch), jnp.int32),
    top_p=jnp.asarray(rng.choice([1e-6, 0.5, 0.8, 0.95, 1.0], batch), jnp.float32),
    min_p=jnp.asarray(rng.choice([0.0, 0.02, 0.3], batch), jnp.float32),
  )


def bits_for(batch, seed=0):
  return jax.random.bits(jax.random.key(seed), (batch, 2), jnp.uint32)


def test_order_key_matches_float_order():
  values = np.array([-np.inf, -3e38, -1.5, -1e-45, -0.0, 0.0, 1e-45, 1.0, 2.5, 3e38, np.inf], np.float32)
  keys = np.asarray(ops.order_key(jnp.asarray(values)))
  for i in range(len(values)):
    for j in range(len(values)):
      assert (keys[i] >= keys[j]) == (values[i] >= values[j]), (values[i], values[j])
  np.testing.assert_array_equal(
    np.asarray(ops.key_to_float(jnp.asarray(keys[1:-1]))), np.where(values[1:-1] == 0, 0.0, values[1:-1])
  )


@pytest.mark.parametrize("thresholds", [1, 2, 3, 7])
def test_bisect_finds_the_kth_largest_key_by_brute_force(thresholds):
  rng = np.random.default_rng(11)
  keys = rng.integers(-(2**31), 2**31 - 1, size=(6, 50), dtype=np.int64).astype(np.int32)
  keys[3] = rng.integers(-3, 3, size=50)  # heavy ties
  keys[4, :] = 2**31 - 2  # one repeated extreme value
  k = np.array([[1], [7], [50], [10], [3], [25]], np.int32)
  jkeys = jnp.asarray(keys)

  def probe(t):  # t [6, thresholds] against keys [6, 1, 50]
    kept = jkeys[:, None, :] >= t[:, :, None]
    count = jnp.sum(kept, axis=-1)
    above = jnp.min(jnp.where(kept, jkeys[:, None, :], ops.INT32_MAX), axis=-1)
    below = jnp.max(jnp.where(kept, ops.INT32_MIN, jkeys[:, None, :]), axis=-1)
    return count >= k, above, below

  found = ops.bisect_largest(
    probe, jnp.full((6, 1), ops.INT32_MIN, jnp.int32), jnp.full((6, 1), ops.INT32_MAX, jnp.int32), thresholds
  )
  expected = np.sort(keys, axis=1)[np.arange(6), 50 - k[:, 0]]
  np.testing.assert_array_equal(np.asarray(found)[:, 0], expected)


def test_thresholds_between_split_the_bracket_evenly():
  lo = np.array([[ops.INT32_MIN], [-5], [10], [0]], np.int32)
  hi = np.array([[ops.INT32_MAX], [5], [12], [1_000_003]], np.int32)
  for count in (1, 3, 7):
    got = np.asarray(ops.thresholds_between(jnp.asarray(lo), jnp.asarray(hi), count)).astype(np.int64)
    width = hi.astype(np.int64) - lo
    expected = lo + (np.arange(1, count + 1) * width) // (count + 1)
    np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(
    np.asarray(ops.thresholds_between(jnp.asarray(lo), jnp.asarray(hi), 1)), np.asarray(ops.midpoint(lo, hi))
  )


def test_probe_keys_sums_and_nearest_keys_against_numpy():
  rng = np.random.default_rng(12)
  rows, n = 5, 3_001
  keys = rng.integers(-1000, 1000, size=(rows, n)).astype(np.int32)
  weights = tuple(rng.integers(0, 2**13, size=(rows, n)).astype(np.int32) for _ in range(3))
  # Thresholds inside the range, above every key (no key >= t) and at the lowest (no key < t).
  t = np.array([[0, -3, 500], [37, 37, 900], [-999, 0, 1], [1000, 2000, -2000], [int(keys[4].min()), 0, 999]], np.int32)
  for m in (1, 3):
    sums, lowest, highest = row_search.probe_keys(
      jnp.asarray(keys), tuple(map(jnp.asarray, weights)), jnp.asarray(t[:, :m])
    )
    kept = keys[:, None, :] >= t[:, :m, None]
    for got, w in zip(sums, weights):
      np.testing.assert_array_equal(np.asarray(got), np.where(kept, w[:, None, :], 0).sum(axis=-1))
    np.testing.assert_array_equal(np.asarray(lowest), np.where(kept, keys[:, None, :], ops.INT32_MAX).min(axis=-1))
    np.testing.assert_array_equal(np.asarray(highest), np.where(kept, ops.INT32_MIN, keys[:, None, :]).max(axis=-1))
    assert np.asarray(lowest)[3, 0] == ops.INT32_MAX and np.asarray(highest)[4, 0] == ops.INT32_MIN


def test_kept_set_equals_sort_oracle_on_random_rows():
  rng = np.random.default_rng(0)
  batch, vocab = 96, 257
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * 3, jnp.float32)
  rows = random_rows(rng, batch, vocab)
  np.testing.assert_array_equal(tr.kept_mask(logits, rows), sorted_kept_mask(logits, rows))


def test_ties_at_the_cutoff_are_kept():
  # Values 5 > 4 = 4 = 4 > 1 ...: top-2 and top-3 keep all three 4s.
  logits = jnp.asarray([[1.0, 4.0, 5.0, 4.0, 0.0, 4.0, 1.0]] * 3, jnp.float32)
  rows = as_row_params([SamplingParams(top_k=2), SamplingParams(top_k=4), SamplingParams(top_k=1)])
  kept = np.asarray(tr.kept_mask(logits, rows))
  np.testing.assert_array_equal(kept.sum(axis=1), [4, 4, 1])
  np.testing.assert_array_equal(kept, np.asarray(sorted_kept_mask(logits, rows)))
  # Top-p that crosses inside the tied group keeps the whole group.
  probs = np.exp([1.0, 4.0, 5.0, 4.0, 0.0, 4.0, 1.0])
  probs /= probs.sum()
  p = float(probs[2] + probs[1] * 0.5)
  kept_p = np.asarray(tr.kept_mask(logits[:1], as_row_params([SamplingParams(top_p=p)])))
  np.testing.assert_array_equal(kept_p[0], [False, True, True, True, False, True, False])


def test_off_values_keep_everything_and_greedy_is_argmax():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(4, 50)), jnp.float32)
  rows = as_row_params(
    [
      SamplingParams(top_k=0),
      SamplingParams(top_k=50),
      SamplingParams(top_k=-3, top_p=1.0, min_p=0.0),
      SamplingParams(temperature=0.0, top_k=3),
    ]
  )
  kept = np.asarray(tr.kept_mask(logits, rows))
  assert kept[:3].all()
  out = tr.sample_reference(logits, rows, bits_for(4))
  assert kept[3].sum() == 1 and int(out.token[3]) == int(np.argmax(logits[3]))
  assert float(out.logprob_sampled[3]) == 0.0


def test_top_p_keeps_the_token_that_crosses_p():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]], jnp.float32))
  for p, expected in [(0.5, 1), (0.51, 2), (0.8, 2), (0.81, 3), (0.96, 4)]:
    kept = tr.kept_mask(logits, as_row_params([SamplingParams(top_p=p)]))
    assert int(kept.sum()) == expected, p


def test_log_probs_of_both_kinds():
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(8, 64)) * 2, jnp.float32)
  rows = SamplingParams(temperature=0.7, top_k=10, top_p=0.9).rows(8)
  out = tr.sample_reference(logits, rows, bits_for(8))
  tokens = np.asarray(out.token)
  raw = jax.nn.log_softmax(logits, axis=-1)
  np.testing.assert_allclose(out.logprob_raw, raw[np.arange(8), tokens], rtol=1e-5, atol=1e-6)
  sampled = jax.nn.log_softmax(tr.truncate_logits(logits, rows), axis=-1)
  np.testing.assert_allclose(out.logprob_sampled, sampled[np.arange(8), tokens], atol=1e-5)
  assert np.all(np.asarray(out.logprob_sampled) > np.asarray(out.logprob_raw) - 10)


def test_same_bits_same_tokens_and_bad_bits_shape():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(6, 40)), jnp.float32)
  rows = SamplingParams(temperature=1.0).rows(6)
  a = tr.sample_reference(logits, rows, bits_for(6, 1))
  b = tr.sample_reference(logits, rows, bits_for(6, 1))
  np.testing.assert_array_equal(a.token, b.token)
  with pytest.raises(ValueError, match="bits"):
    tr.sample_reference(logits, rows, bits_for(5))


def test_kept_set_matches_hugging_face_warpers():
  torch = pytest.importorskip("torch")
  lp = pytest.importorskip("transformers.generation.logits_process")
  rng = np.random.default_rng(4)
  vocab = 100
  for temperature, top_k, top_p, min_p in [
    (1.0, 20, 0.8, 0.0),
    (1.6, 20, 0.8, 0.05),
    (0.7, 0, 0.95, 0.1),
    (1.1, 5, 1.0, 0.0),
    (0.9, 40, 0.3, 0.0),
  ]:
    logits = rng.normal(size=(4, vocab)).astype(np.float32) * 2.5
    scores = torch.from_numpy(logits.copy())
    scores = lp.TemperatureLogitsWarper(temperature)(None, scores)
    if top_k > 0:
      scores = lp.TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1:
      scores = lp.TopPLogitsWarper(top_p)(None, scores)
    if min_p > 0:
      scores = lp.MinPLogitsWarper(min_p)(None, scores)
    hf_kept = torch.isfinite(scores).numpy()
    rows = SamplingParams(temperature, top_k, top_p, min_p).rows(4)
    np.testing.assert_array_equal(tr.kept_mask(jnp.asarray(logits), rows), hf_kept)


def _exact_truncated_distribution(logits, temperature, top_k, top_p, min_p):
  """float64 brute force of the contract for one row with distinct values."""
  z = logits.astype(np.float64) / temperature
  order = np.argsort(-z)
  kept = np.zeros(len(z), bool)
  kept[order[:top_k]] = True
  probs = np.where(kept, np.exp(z - z.max()), 0.0)
  probs /= probs.sum()
  before = np.cumsum(probs[order]) - probs[order]
  kept[order[before >= top_p]] = False
  probs = np.where(kept, np.exp(z - z.max()), 0.0)
  kept &= probs >= min_p
  probs = np.where(kept, probs, 0.0)
  return probs / probs.sum()


def _chi_square_pvalue(counts, expected_probs):
  support = expected_probs > 0
  if np.any(counts[~support] > 0):
    return 0.0
  expected = expected_probs[support] * counts.sum()
  return scipy.stats.chisquare(counts[support], expected).pvalue


def test_empirical_frequencies_match_the_truncated_distribution():
  logits = np.array([2.0, 1.7, 1.5, 1.0, 0.9, 0.2, -0.5, -1.0, 0.95, 1.8], np.float32)
  temperature, top_k, top_p, min_p = 1.3, 7, 0.85, 0.05
  draws = 40_000
  rows = SamplingParams(temperature, top_k, top_p, min_p).rows(draws)
  out = tr.sample_reference(jnp.broadcast_to(jnp.asarray(logits), (draws, len(logits))), rows, bits_for(draws, 7))
  counts = np.bincount(np.asarray(out.token), minlength=len(logits))
  exact = _exact_truncated_distribution(logits, temperature, top_k, top_p, min_p)
  assert 3 <= (exact > 0).sum() < top_k  # top-p bites after top-k
  assert _chi_square_pvalue(counts, exact) > 1e-4
  # The same test rejects a distribution with a wrong cut-off or temperature.
  wrong_cutoff = _exact_truncated_distribution(logits, temperature, top_k, 0.95, min_p)
  wrong_temperature = _exact_truncated_distribution(logits, 1.0, top_k, top_p, min_p)
  assert _chi_square_pvalue(counts, wrong_cutoff) < 1e-6
  assert _chi_square_pvalue(counts, wrong_temperature) < 1e-6
  total_variation = 0.5 * np.abs(counts / draws - exact).sum()
  assert total_variation < 0.015


def test_draw_takes_the_first_of_tied_maxima():
  # The draw's argmax is a max then the least index holding it; numpy's argmax is the referee.
  rng = np.random.default_rng(3)
  logits = rng.integers(-4, 3, size=(6, 70_000)).astype(np.float32)  # every row's maximum is tied many times
  logits[1, :] = -np.inf
  logits[1, [40_000, 69_999]] = 1.0  # a tie far apart, the rest masked
  logits[2, 12] = 9.0  # a single maximum
  greedy = tr.sample_reference(jnp.asarray(logits), as_row_params(SamplingParams(temperature=0.0), 6), bits_for(6))
  np.testing.assert_array_equal(np.asarray(greedy.token), np.argmax(logits, axis=1))
  # Sampling rows: the drawn token is the first argmax of the race scores, as numpy finds it.
  rows = as_row_params(SamplingParams(temperature=1.0), 6)
  bits = bits_for(6, seed=1)
  d = np.asarray(tr.tempered_logits(jnp.asarray(logits), rows))
  index = jnp.broadcast_to(jnp.arange(logits.shape[1], dtype=jnp.int32), logits.shape)
  race = race_noise.race_weights(*(jax.lax.bitcast_convert_type(bits, jnp.int32)[:, i : i + 1] for i in (0, 1)), index)
  score = np.asarray(race_noise.draw_score(jnp.asarray(d), race, jnp.zeros((6, 1), bool)))
  drawn = tr.sample_reference(jnp.asarray(logits), rows, bits)
  np.testing.assert_array_equal(np.asarray(drawn.token), np.argmax(score, axis=1))


def test_race_noise_is_exponential_down_to_tiny_values():
  # The race draws token i with probability proportional to p_i only if E_i ~ Exponential(1) everywhere,
  # including E far below 1: a token 1e-8 as likely as the top one wins only when its E is ~1e-8 of the
  # top's. Referee: P(E < x) = 1 - exp(-x), from every bucket of u at x and a fine grid of the bits inside.
  below = np.arange(32, dtype=np.int64)  # The buckets nearest u = 1, where E < 32 * 2^-23.
  fine = np.arange(0, 2**24, 2**10, dtype=np.int64)  # 2^14 evenly spaced values of the 24 fine bits.
  bits = (((2**23 - 1 - below) << 9)[:, None] + np.zeros_like(fine)[None, :]).astype(np.uint32)
  fine_bits = np.broadcast_to((fine << 8).astype(np.uint32), bits.shape)
  as_int32 = lambda x: jax.lax.bitcast_convert_type(jnp.asarray(x), jnp.int32)  # noqa: E731
  e = np.asarray(race_noise.exponential_from_bits(as_int32(bits), as_int32(fine_bits)), np.float64)
  for x in (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 3e-6):
    probability = (e < x).mean() * len(below) / 2**23  # Each bucket holds 2^-23 of u's mass.
    assert probability == pytest.approx(-np.expm1(-x), rel=0.02, abs=2**-37), x
  # Outside the refined buckets E is -log(u) at the bucket's midpoint, as it always was.
  bucket = np.array([0, 1, 2**22, 2**23 - 1 - race_noise.REFINED_BUCKETS], np.int64)
  e = np.asarray(
    race_noise.exponential_from_bits(as_int32((bucket << 9).astype(np.uint32)), as_int32(np.zeros(4, np.uint32)))
  )
  np.testing.assert_allclose(e, -np.log((bucket + 0.5) / 2**23), rtol=1e-6)


def test_race_noise_inside_a_refined_bucket_is_not_fixed_by_the_bucket():
  # Rows whose bits for a token coincide (seed1 = mix(index * golden + seed0) ^ c) land in the same bucket of u;
  # inside a refined bucket their E must still spread over the bucket. Fine bits hashed from `bits` itself
  # gave every such row the same E (each refined bucket held 512 values of E, not 2^24).
  mix = race_noise._mix32  # pylint: disable=protected-access
  words = np.asarray(mix(jnp.arange(200_000, dtype=jnp.int32))).view(np.uint32)
  c = int(np.flatnonzero((words >> 9) >= 2**23 - race_noise.REFINED_BUCKETS)[0])  # mix(c) is in a refined bucket
  rows, index = 4096, 7
  seed0 = jnp.arange(rows, dtype=jnp.int32)[:, None] * 7919
  seed1 = mix(jnp.int32(index) * jnp.int32(race_noise._GOLDEN) + seed0) ^ jnp.int32(c)  # pylint: disable=protected-access
  e = 1.0 / np.asarray(race_noise.race_weights(seed0, seed1, jnp.full((rows, 1), index, jnp.int32)), np.float64)
  v = -np.expm1(-e)  # 1 - u
  below = 2**23 - 1 - (int(words[c]) >> 9)
  position = v / 2.0**-23 - below  # where in the bucket, in [0, 1)
  assert np.all((position > -1e-3) & (position < 1 + 1e-3))  # one bucket for every row
  assert len(np.unique(e)) > rows // 2  # float32 holds ~16k values of E in this bucket
  assert np.mean(position) == pytest.approx(0.5, abs=0.03)  # spread evenly over it
