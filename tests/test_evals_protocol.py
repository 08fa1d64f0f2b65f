"""The evaluation protocol: dev/test split, decoding grid, best-setting selection, paired interval coverage."""

import json
import math
import types

import numpy as np
import pytest
from pipeline_fixtures import context

from ssd_jax.config import base_config
from ssd_jax.evals import grid_runs
from ssd_jax.evals.pass_at_k import (
  paired_difference,
  paired_difference_text,
  pass_at_k_curve,
  sign_test_p,
)
from ssd_jax.evals.protocol import DecodingSetting, parse_grid, select_best
from ssd_jax.evals.splits import Split, record_split, split_problems
from ssd_jax.tasks import builtin_problems

IDS = [f"task/{i}" for i in range(60)]


def test_split_is_disjoint_complete_and_deterministic():
  split = split_problems(IDS, dev_fraction=0.5, seed=3)
  assert not set(split.dev) & set(split.test)
  assert sorted(split.dev + split.test) == sorted(IDS)
  assert len(split.dev) == 30
  assert split == split_problems(IDS, dev_fraction=0.5, seed=3)
  assert split != split_problems(IDS, dev_fraction=0.5, seed=4)


def test_split_does_not_depend_on_problem_order():
  shuffled = list(np.random.default_rng(0).permutation(IDS))
  assert split_problems(shuffled, 0.3, seed=1) == split_problems(IDS, 0.3, seed=1)


def test_split_keeps_every_stratum_in_both_parts():
  strata = {t: ("easy", "medium", "hard")[i % 3] if i < 57 else "rare" for i, t in enumerate(IDS)}
  split = split_problems(IDS, 0.5, seed=0, strata=strata)
  for label in ("easy", "medium", "hard", "rare"):
    members = {t for t, s in strata.items() if s == label}
    assert members & set(split.dev) and members & set(split.test), label


def test_strata_of_one_problem_are_split_together():
  strata = {"a": "easy", "b": "medium", "c": "hard", "d": "hard", "e": "hard", "f": "hard"}
  for fraction in (0.4, 0.5, 0.6):
    split = split_problems(list(strata), fraction, strata=strata)
    singles = {"a", "b"}.intersection(split.dev), {"a", "b"}.intersection(split.test)
    assert len(singles[0]) == len(singles[1]) == 1, fraction  # rounded alone, both went to the same part
    hard = {"c", "d", "e", "f"}.intersection(split.dev)
    assert len(hard) in (math.floor(4 * fraction), math.ceil(4 * fraction)), fraction


def test_a_shares_fraction_rounds_up_at_its_probability_not_alike_in_every_stratum():
  strata = {f"{label}{i}": label for label in ("easy", "medium", "hard") for i in range(5)}
  sizes = [len(split_problems(list(strata), 0.5, seed, strata=strata).dev) for seed in range(300)]
  assert 7.2 < sum(sizes) / len(sizes) < 7.8  # 3 x 2.5; rounding half to even gave 6 every time.
  even = {f"{label}{i}": label for label in ("easy", "hard") for i in range(6)}
  assert {len(split_problems(list(even), 0.5, seed, strata=even).dev) for seed in range(50)} == {6}
  assert {len(split_problems(IDS[:10], 0.3, seed).dev) for seed in range(50)} == {3}


def test_a_split_with_an_empty_part_is_refused():
  for fraction in (0.4, 0.5, 0.6):
    with pytest.raises(ValueError, match="1 problem.* leave the (dev|test) part empty"):
      split_problems(["a"], fraction)


def test_a_split_or_candidates_that_cannot_be_scored_are_refused_by_name():
  with pytest.raises(ValueError, match="the test part is empty"):
    Split(("a", "b"), (), 0, 0.5)
  with pytest.raises(ValueError, match="ids repeat in the dev part"):
    Split(("a", "a"), ("b",), 0, 0.5)
  with pytest.raises(ValueError, match=r"candidate 'T1' has no results for 1 dev problems, e.g. \['d2'\]"):
    select_best({"T0": {"d1": (2, 1), "d2": (2, 0)}, "T1": {"d1": (2, 2)}}, ["d1", "d2"])


def test_a_problem_alone_in_the_singles_stratum_goes_to_dev_at_the_dev_fraction():
  strata = {"a": "easy", "b": "hard", "c": "hard"}
  for fraction in (0.25, 0.5):
    in_dev = sum("a" in split_problems(list(strata), fraction, seed, strata=strata).dev for seed in range(400))
    assert abs(in_dev / 400 - fraction) < 0.08, (fraction, in_dev)  # Rounded alone it never went to dev.


def test_recorded_split_is_reused_and_checked(tmp_path):
  path = tmp_path / "split.json"
  first = record_split(path, split_problems(IDS, 0.5, seed=0))
  assert record_split(path, split_problems(list(reversed(IDS)), 0.5, seed=0)) == first
  with pytest.raises(ValueError, match="differs"):
    record_split(path, split_problems(IDS[:-1], 0.5, seed=0))
  with pytest.raises(ValueError, match="dev_fraction"):
    split_problems(IDS, 1.0)


def test_grid_parses_settings_in_order_and_names_bad_fields():
  grid = parse_grid("0.5, 0.9", "20/0.8,0/1.0", "official=0.7/20/0.95", default_truncation=(0, 1.0))
  labels = [s.label for s in grid.settings()]
  assert labels == ["official_T0.7_k20_p0.95", "T0.5_k20_p0.8", "T0.5_k0_p1", "T0.9_k20_p0.8", "T0.9_k0_p1"]
  assert parse_grid("1.1", "", "", (20, 0.8)).settings() == [DecodingSetting(1.1, 20, 0.8)]
  # A grid point that is the named setting's decoding is sampled once, under the name.
  labels = [s.label for s in parse_grid("0.7,0.9", "", "official=0.7/20/0.8", (20, 0.8)).settings()]
  assert labels == ["official_T0.7_k20_p0.8", "T0.9_k20_p0.8"]
  with pytest.raises(ValueError, match="eval.grid.truncations"):
    parse_grid("1.0", "20-0.8", "", (0, 1.0))
  with pytest.raises(ValueError, match="eval.grid.named"):
    parse_grid("1.0", "", "official=0.7/20", (0, 1.0))
  for temperatures, truncations, message in (
    ("-0.5", "", r"field 'eval.grid.temperatures': decoding temperature must be >= 0"),
    ("nan", "", r"field 'eval.grid.temperatures'"),
    ("1.0", "20/1.5", r"field 'eval.grid.truncations': decoding top_p must be in \(0, 1\]"),
    ("1.0", "-1/0.8", r"field 'eval.grid.truncations': decoding top_k must be >= 0"),
    ("0.3,0.3", "", r"fields 'eval.grid.\*': decoding grid repeats a setting"),
  ):
    with pytest.raises(ValueError, match=message):
      parse_grid(temperatures, truncations, "", (0, 1.0))


def counts(dev_correct, test_correct, n=4):
  """task_id -> (n, c): the first half of IDS is 'dev', the second 'test' in these tests."""
  half = len(IDS) // 2
  return {t: (n, dev_correct if i < half else test_correct) for i, t in enumerate(IDS)}


def test_selection_uses_only_dev_problems():
  dev = IDS[: len(IDS) // 2]
  candidates = {
    "T0.5": counts(dev_correct=2, test_correct=0),
    "T0.9": counts(dev_correct=1, test_correct=4),  # best on test, worse on dev: must not be chosen
  }
  selection = select_best(candidates, dev)
  assert selection.best == "T0.5"
  assert selection.scores["T0.5"] == pytest.approx((0.5, 1.0))


def test_selection_tie_rule():
  dev = IDS[:2]
  # Equal dev pass@1 (0.5): the higher dev pass@n wins, though it comes later.
  concentrated = {dev[0]: (4, 4), dev[1]: (4, 0)}
  spread = {dev[0]: (4, 2), dev[1]: (4, 2)}
  assert select_best({"a": concentrated, "b": spread}, dev).best == "b"
  # Exact tie on both: the first candidate in order wins.
  assert select_best({"a": spread, "b": dict(spread)}, dev).best == "a"
  assert select_best({"b": spread, "a": dict(spread)}, dev).best == "b"
  with pytest.raises(ValueError, match="no results"):
    select_best({"a": {dev[0]: (4, 1)}}, dev)


def test_pass_at_k_curve_runs_to_n():
  curve = pass_at_k_curve([4, 4], [1, 4], num_resamples=50)
  assert list(curve) == ["1", "2", "3", "4"]
  assert curve["1"]["mean"] == pytest.approx((0.25 + 1) / 2)
  assert curve["4"]["mean"] == pytest.approx(1.0)


def test_paired_interval_covers_the_true_difference():
  """Problems have random difficulty shared by both models; model A solves each with probability
  difficulty + delta. Over many replicate evaluations the 95% interval should cover delta ~95% of the time."""
  rng = np.random.default_rng(1234)
  delta, num_problems, n, replicates = 0.05, 80, 8, 300
  covered = 0
  for _ in range(replicates):
    difficulty = rng.uniform(0.1, 0.85, num_problems)
    a = rng.binomial(n, difficulty + delta) / n
    b = rng.binomial(n, difficulty) / n
    interval = paired_difference(a, b)
    covered += interval["ci_low"] <= delta <= interval["ci_high"]
  assert 0.90 <= covered / replicates <= 0.99


def test_paired_interval_keeps_its_coverage_on_a_dozen_mostly_tied_problems():
  """pass@8 of 8 samples on 12 problems, most of them never solved by either model (difficulties from
  Beta(0.15, 1.6)), the method a little better on each: a percentile bootstrap of the differences covered the
  true gain in 77% of replicate evaluations (nominal 95%); the t interval must hold 95%."""
  rng = np.random.default_rng(7)
  shift, num_problems, n = 0.05, 12, 8
  population = rng.beta(0.15, 1.6, 2_000_000)
  gain = lambda p: 1 - (1 - np.clip(p + shift * np.sqrt(p), 0, 1)) ** n - (1 - (1 - p) ** n)
  true_gain = float(np.mean(gain(population)))
  covered = replicates = 0
  while replicates < 300:
    p = rng.beta(0.15, 1.6, num_problems)
    a = (rng.binomial(n, np.clip(p + shift * np.sqrt(p), 0, 1)) > 0).astype(float)
    b = (rng.binomial(n, p) > 0).astype(float)
    if np.array_equal(a, b):  # no problem differs: the report prints no interval
      continue
    interval = paired_difference(a, b)
    covered += interval["ci_low"] <= true_gain <= interval["ci_high"]
    replicates += 1
  assert covered / replicates >= 0.95, covered / replicates


def test_paired_interval_is_narrower_than_unpaired():
  rng = np.random.default_rng(0)
  difficulty = rng.uniform(0, 1, 200)
  a, b = difficulty + rng.normal(0.02, 0.05, 200), difficulty
  paired = paired_difference(a, b)
  assert paired["difference"] == pytest.approx(np.mean(a - b))
  # Resampling each model's problems on their own keeps the difficulty in the spread (about 8x wider here).
  unpaired = [rng.choice(a, 200).mean() - rng.choice(b, 200).mean() for _ in range(2000)]
  unpaired_width = np.subtract(*np.quantile(unpaired, [0.975, 0.025]))
  assert paired["ci_high"] - paired["ci_low"] < 0.25 * unpaired_width
  with pytest.raises(ValueError, match="one value per problem"):
    paired_difference([1.0, 2.0], [1.0])


def test_the_sign_test_matches_scipys_exact_binomial_test():
  scipy_stats = pytest.importorskip("scipy.stats")
  for wins, losses in ((0, 0), (1, 0), (3, 1), (5, 0), (6, 6), (2, 11), (40, 25), (0, 300)):
    expected = 1.0 if wins + losses == 0 else scipy_stats.binomtest(wins, wins + losses, 0.5).pvalue
    assert sign_test_p(wins, losses) == pytest.approx(expected, rel=1e-12, abs=1e-300), (wins, losses)
  with pytest.raises(ValueError, match=">= 0"):
    sign_test_p(-1, 2)


def test_a_paired_difference_counts_wins_and_losses_and_reads_as_such():
  d = paired_difference([1.0, 0.5, 0.0, 1.0], [0.0, 0.5, 1.0, 0.0])
  assert (d["wins"], d["losses"]) == (2, 1) and d["sign_p"] == 1.0
  assert paired_difference_text(d, counts=True).endswith(" 2/1 p=1.00")
  assert paired_difference_text(d).endswith("]")
  # With every problem scored alike the interval has no width; it is not printed as certainty.
  same = paired_difference([1.0, 1.0, 0.0], [1.0, 1.0, 0.0])
  assert (same["ci_low"], same["ci_high"]) == (0.0, 0.0)
  assert paired_difference_text(same, counts=True) == "+0.0 (no problem differs)"
  recorded_before = {k: v for k, v in same.items() if k not in ("wins", "losses", "sign_p")}
  assert paired_difference_text(recorded_before, counts=True) == "+0.0 [+0.0, +0.0]"


def test_interval_bounds_print_rounded_outward_and_one_problem_has_none():
  d = {"difference": 0.023, "ci_low": -0.0004, "ci_high": 0.0501, "num_problems": 32, "wins": 7, "losses": 2}
  assert paired_difference_text(d) == "+2.3 [-0.1, +5.1]"  # -0.04 points is below zero: never "+0.0"
  exact = {**d, "ci_low": 0.004, "ci_high": 0.047}  # 100 * 0.004 is 0.4 and a last bit: not widened
  assert paired_difference_text(exact) == "+2.3 [+0.4, +4.7]"
  one = paired_difference([1.0], [0.0])
  assert one["difference"] == 1.0 and one["ci_low"] is None and one["ci_high"] is None  # JSON has no nan
  assert paired_difference_text(one, counts=True) == "+100.0 (one problem: no interval) 1/0 p=1.00"
  alike = paired_difference([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])  # No spread: a t interval would have no width.
  assert alike["ci_low"] is None and alike["ci_high"] is None and alike["difference"] == 1.0
  assert paired_difference_text(alike, counts=True) == "+100.0 (no spread: no CI) 3/0 p=0.25"


def test_grid_runs_are_read_back_with_their_test_part(tmp_path):
  settings = [DecodingSetting(0.5, 20, 0.8), DecodingSetting(1.1, 20, 0.8)]
  for setting in settings:
    for part, ids in (("dev", ["d1", "d2"]), ("test", ["t1"])):
      if part == "test" and setting.temperature > 1:
        continue  # only the chosen setting runs on test
      path = grid_runs.run_dir(tmp_path, "base", "final", setting, part)
      path.mkdir(parents=True)
      records = [{"task_id": t, "n": 4, "c": 1} for t in ids]
      (path / "results.json").write_text(
        json.dumps({"per_problem": records, **grid_runs.run_metadata("final", setting, part)})
      )
  assert grid_runs.weak_sandbox_reasons(tmp_path, ["base"]) == []
  path = grid_runs.run_dir(tmp_path, "base", "final", settings[1], "dev") / "results.json"
  path.write_text(json.dumps({**json.loads(path.read_text()), "sandbox": {"weak": "no user namespaces"}}))
  assert grid_runs.weak_sandbox_reasons(tmp_path, ["base"]) == ["no user namespaces"]
  candidates = grid_runs.load_candidates(tmp_path, "base", ["final"], settings)
  assert [c.key for c in candidates] == ["final/T0.5_k20_p0.8", "final/T1.1_k20_p0.8"]
  assert [len(c.per_problem) for c in candidates] == [3, 2]
  with pytest.raises(FileNotFoundError, match="step_10"):
    grid_runs.load_candidates(tmp_path, "base", ["final", "step_10"], settings)


def test_the_split_does_not_move_with_the_run_seed(tmp_path):
  # Replicate runs (other seeds) must be tested on the same held-out problems.
  problems = builtin_problems("eval", 40)
  prompts = types.SimpleNamespace(problems=problems, task_ids=[p.task_id for p in problems])  # what a split reads
  config = base_config()
  first = context(config, tmp_path / "a")
  replicate = config.copy_and_resolve_references()
  replicate.seed = 7
  assert context(replicate, tmp_path / "b").eval_split(prompts) == first.eval_split(prompts)
  replicate.eval.split.seed = 7
  assert context(replicate, tmp_path / "c").eval_split(prompts) != first.eval_split(prompts)


def test_a_stratum_labelled_none_keeps_its_problems_beside_single_problem_strata():
  strata = {"a": None, "b": None, "c": None, "d": "hard", "e": ""}
  split = split_problems(list("abcde"), 0.5, 0, strata=strata)
  assert sorted(split.dev + split.test) == list("abcde")
