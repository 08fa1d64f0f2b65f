"""The unbiased pass@k estimator, confidence intervals over problems (bootstrap for one model, Student-t for a
paired difference) and the paired sign test."""

from __future__ import annotations

import fractions
import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats

DEFAULT_KS = (1, 4, 8, 16)


def pass_at_k(n: int, c: int, k: int) -> float:
  """Probability that at least one of k samples drawn without replacement from n is correct.

  Computes 1 - C(n-c, k) / C(n, k) in exact rational arithmetic, rounded once to a float: pass@1 is c / n to
  the last bit, so two equal scores differ by exactly 0 (the float product form left one-ulp differences,
  which printed as "-0.0" interval bounds).

  Args:
    n: samples drawn for the problem.
    c: correct samples among them.
    k: subset size, 1 <= k <= n.
  """
  for name, value in (("n", n), ("c", c), ("k", k)):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
      raise TypeError(f"pass_at_k: {name} must be an integer (a count), got {value!r}")
  if not 0 <= c <= n:
    raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
  if not 1 <= k <= n:
    raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
  if n - c < k:  # every k-subset contains a correct sample
    return 1.0
  return float(1 - fractions.Fraction(math.comb(n - c, k), math.comb(n, k)))


def valid_ks(num_samples: Sequence[int], requested: Sequence[int] = DEFAULT_KS) -> list[int]:
  """The requested k that every problem supports (k <= its n), sorted, without repeats."""
  if len(num_samples) == 0:
    return []
  smallest = min(num_samples)
  return sorted({k for k in requested if 1 <= k <= smallest})


def pass_at_k_per_problem(num_samples: Sequence[int], num_correct: Sequence[int], k: int) -> np.ndarray:
  """pass@k of each problem, [num_problems] float64."""
  return np.array([pass_at_k(n, c, k) for n, c in zip(num_samples, num_correct, strict=True)], dtype=np.float64)


def bootstrap_mean_ci(
  values: Sequence[float], num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean, resampling problems with replacement.

  Args:
    values: one number per problem, [num_problems].
    num_resamples: bootstrap replicates.
    confidence: coverage of the interval, in (0, 1).
    seed: seed of the resampling, so reports are reproducible.

  Returns:
    (low, high); (nan, nan) when there are no values.
  """
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  if num_resamples < 1:
    raise ValueError(f"num_resamples must be at least 1, got {num_resamples}")
  values = np.asarray(values, dtype=np.float64)
  if values.size == 0:
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  indices = rng.integers(0, values.size, size=(num_resamples, values.size))
  means = values[indices].mean(axis=1)
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(means, [alpha, 1.0 - alpha])
  return float(low), float(high)


def pass_at_k_curve(
  num_samples: Sequence[int], num_correct: Sequence[int], num_resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
  """pass@k for every k = 1..min(n) with percentile bootstrap intervals over problems.

  Args:
    num_samples: n of each problem, [num_problems].
    num_correct: c of each problem, [num_problems].
    num_resamples: bootstrap replicates.
    seed: bootstrap seed.

  Returns:
    {str(k): {"mean", "ci_low", "ci_high"}} for k = 1..min(n), as fractions in [0, 1].
  """
  if len(num_samples) != len(num_correct):
    raise ValueError(f"pass_at_k_curve: {len(num_samples)} sample counts but {len(num_correct)} correct counts")
  if len(num_samples) == 0:
    return {}
  return {
    str(k): pass_at_k_with_ci(num_samples, num_correct, k, num_resamples, seed) for k in range(1, min(num_samples) + 1)
  }


def pass_at_k_with_ci(
  num_samples: Sequence[int], num_correct: Sequence[int], k: int, num_resamples: int = 1000, seed: int = 0
) -> dict[str, float]:
  """Mean pass@k over problems with its percentile bootstrap interval: {"mean", "ci_low", "ci_high"}.

  Args:
    num_samples: n of each problem, [num_problems], every n >= k.
    num_correct: c of each problem, [num_problems].
    k: samples drawn per problem.
    num_resamples: bootstrap replicates.
    seed: bootstrap seed.
  """
  values = pass_at_k_per_problem(num_samples, num_correct, k)
  low, high = bootstrap_mean_ci(values, num_resamples=num_resamples, seed=seed)
  return {"mean": float(values.mean()), "ci_low": low, "ci_high": high}


def paired_difference(
  first: Sequence[float], second: Sequence[float], confidence: float = 0.95
) -> dict[str, float | None]:
  """Mean difference `first - second` over problems with a Student-t interval of the paired differences.

  Each problem contributes its difference, so problem difficulty, shared by both models, cancels. The t
  interval holds its coverage where a percentile bootstrap of the same differences does not: on a dozen to a
  few dozen problems whose differences are mostly 0, simulated at 12-32 problems x 8 samples, the bootstrap
  covered 77-93% for a nominal 95% (pass@8: 77%), the t interval 95-100% (`tests/test_evals_protocol.py`).
  The problems each model does better on and the exact sign test's p-value come with it.

  Args:
    first: one value per problem for the first model (e.g. its pass@1), [num_problems].
    second: the second model's values on the same problems in the same order, [num_problems].
    confidence: coverage of the interval, in (0, 1).

  Returns:
    {"difference", "ci_low", "ci_high", "num_problems", "wins", "losses", "sign_p"}: wins and losses count the
    problems where `first` is above and below `second`; sign_p is `sign_test_p(wins, losses)`. The difference
    is None when there are no problems, and the interval's bounds when there are fewer than two or every
    problem differs by the same nonzero amount (JSON has no nan).
  """
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
  if first.shape != second.shape or first.ndim != 1:
    raise ValueError(f"paired values need one value per problem for both models, got {first.shape} and {second.shape}")
  differences = first - second
  difference = float(differences.mean()) if differences.size else None
  low = high = None
  # Equal nonzero differences have no spread to scale a t interval by: a zero-width one would read as certainty.
  if differences.size >= 2 and (np.ptp(differences) > 1e-12 or difference == 0):
    half_width = scipy.stats.t.ppf((1 + confidence) / 2, differences.size - 1) * differences.std(ddof=1)
    half_width /= math.sqrt(differences.size)
    low, high = float(difference - half_width), float(difference + half_width)
  wins, losses = int((first > second).sum()), int((first < second).sum())
  return {
    "difference": difference,
    "ci_low": low,
    "ci_high": high,
    "num_problems": int(first.size),
    "wins": wins,
    "losses": losses,
    "sign_p": sign_test_p(wins, losses),
  }


def sign_test_p(wins: int, losses: int) -> float:
  """Two-sided exact sign test: the chance, were either model as likely to do better on a problem where they
  differ, of a split at least as uneven as `wins` against `losses` (ties left out); 1.0 when none differ.

  Args:
    wins: problems where the first model scores higher.
    losses: problems where it scores lower.
  """
  if wins < 0 or losses < 0:
    raise ValueError(f"sign_test_p: counts must be >= 0, got {wins} and {losses}")
  total = wins + losses
  tail = sum(math.comb(total, i) for i in range(min(wins, losses) + 1))
  return float(min(fractions.Fraction(2 * tail, 2**total), 1))


def signed_text(x: float, digits: int) -> str:
  """`x` with its sign, a value that rounds to zero as +0 (not "-0.0", which reads as below zero)."""
  return f"{x if round(x, digits) else 0.0:+.{digits}f}"


def _bound_text(x: float, digits: int, lower: bool) -> str:
  """An interval bound rounded outward, so a bound just below zero never reads as "+0.0" (a float's last-bit
  noise, e.g. 100 * 0.004, is not rounded outward)."""
  steps = x * 10**digits
  steps = math.floor(steps + 1e-9) if lower else math.ceil(steps - 1e-9)
  return signed_text(steps / 10**digits, digits)


def paired_difference_text(d: Mapping, scale: float = 100.0, digits: int = 1, counts: bool = False) -> str:
  """A `paired_difference` result as `difference [low, high]`, scaled (100: percent), the bounds rounded outward.

  With `counts`, `wins/losses p=<sign test>` follows (when recorded: results written before they were kept
  lack them); a result where no problem differs reads "+0.0 (no problem differs)", not a zero-width interval,
  one over a single problem "(one problem: no interval)", and one where every problem differs by the same
  amount "(no spread: no CI)".
  """
  if not d["num_problems"]:
    return "n/a"
  if d.get("wins") == d.get("losses") == 0:
    return f"{signed_text(0.0, digits)} (no problem differs)"
  mid = signed_text(scale * d["difference"], digits)
  if d["ci_low"] is None:
    # Short enough for the report's columns; "no spread": every problem differs by the same amount.
    text = f"{mid} (one problem: no interval)" if d["num_problems"] == 1 else f"{mid} (no spread: no CI)"
  else:
    low, high = _bound_text(scale * d["ci_low"], digits, True), _bound_text(scale * d["ci_high"], digits, False)
    text = f"{mid} [{low}, {high}]"
  if counts and "wins" in d:
    text += f" {d['wins']}/{d['losses']} p={d['sign_p']:.2f}"
  return text
