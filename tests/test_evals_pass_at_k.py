"""pass@k against brute-force enumeration of k-subsets, edge cases, and bootstrap intervals."""

import itertools

import numpy as np
import pytest

from ssd_jax.evals.pass_at_k import bootstrap_mean_ci, pass_at_k, pass_at_k_curve, valid_ks


def brute_force_pass_at_k(n, c, k):
  samples = [True] * c + [False] * (n - c)
  subsets = list(itertools.combinations(range(n), k))
  return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10])
def test_matches_brute_force(n):
  for c in range(n + 1):
    for k in range(1, n + 1):
      assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_edge_cases():
  assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 0, 10) == 0.0
  assert pass_at_k(10, 10, 1) == 1.0
  assert pass_at_k(10, 3, 8) == 1.0  # n - c < k
  assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_at_1_is_c_over_n_to_the_last_bit():
  # Equal scores then differ by exactly 0: a one-ulp difference printed as a "-0.0" interval bound.
  assert [(n, c) for n in range(1, 65) for c in range(n + 1) if pass_at_k(n, c, 1) != c / n] == []


def test_large_n_is_stable():
  value = pass_at_k(2000, 1, 1000)
  assert value == pytest.approx(0.5, abs=1e-9)
  assert 0.0 < pass_at_k(100000, 1, 1) < 1e-4


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_rejects_bad_arguments(n, c, k):
  with pytest.raises(ValueError):
    pass_at_k(n, c, k)


@pytest.mark.parametrize("n,c,k", [(4, 2.5, 1), (4, 2, 1.5), (4.5, 2, 1), (4, True, 1)])
def test_rejects_counts_that_are_not_integers(n, c, k):
  with pytest.raises(TypeError, match="must be an integer"):
    pass_at_k(n, c, k)
  assert pass_at_k(np.int64(4), np.int32(2), 1) == 0.5  # numpy counts are counts


def test_lists_of_different_lengths_and_zero_resamples_are_refused():
  with pytest.raises(ValueError, match="3 sample counts but 1 correct"):
    pass_at_k_curve([4, 4, 4], [4])
  with pytest.raises(ValueError, match="num_resamples"):
    bootstrap_mean_ci([0.5, 1.0], num_resamples=0)


def test_valid_ks():
  assert valid_ks([10, 16, 20], (1, 4, 8, 16)) == [1, 4, 8]
  assert valid_ks([16], (16, 1, 4, 4)) == [1, 4, 16]


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
  rng = np.random.default_rng(1)
  values = rng.uniform(size=200)
  low, high = bootstrap_mean_ci(values, num_resamples=2000, seed=3)
  assert low < values.mean() < high
  assert (low, high) == bootstrap_mean_ci(values, num_resamples=2000, seed=3)
  # the standard error of a mean of U(0,1) over 200 problems is ~0.0204: a 95% interval is ~0.08 wide
  assert 0.06 < high - low < 0.10
  assert bootstrap_mean_ci([0.5] * 10) == (0.5, 0.5)
