"""Diversity among correct samples on hand-made completions: AST and behaviour clusters, known solutions."""

import itertools

import pytest

from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.evals import Sandbox, SandboxLimits, evaluate
from ssd_jax.evals.comparison import Candidate, compare_models
from ssd_jax.evals.comparison_report import comparison_table, write_comparison
from ssd_jax.evals.correct_diversity import (
  correct_solution_clusters,
  diversity_at_m,
  expected_distinct,
  solution_form,
)
from ssd_jax.evals.evaluate import EvalResult, ProblemResult, SampleResult
from ssd_jax.evals.probes import correct_sample_behaviours, generated_probe_inputs
from ssd_jax.evals.protocol import DecodingSetting
from ssd_jax.evals.splits import Split
from ssd_jax.evals.summary import summarize
from ssd_jax.evals.verdicts import TestRun, Verdict

RANGE_SUM = Problem(
  task_id="toy/range_sum",
  question="Write `total(n)`: the sum of 1..n.",
  entry_point="total",
  tests=tuple(TestCase(f"t{i}", f"assert total({m}) == {m * (m + 1) // 2}") for i, m in enumerate((1, 4, 9))),
  difficulty="hard",
)
LOOP = "def total(n):\n    s = 0\n    for i in range(1, n + 1):\n        s += i\n    return s"
LOOP_RENAMED = "def total(k):\n    acc: int = 0\n    for j in range(1, k + 1):\n        acc += j\n    return acc"
BUILTIN = "def total(n):\n    return sum(range(1, n + 1))"
FORMULA = "def total(n):\n    return n * (n + 1) // 2"
WRONG = "def total(n):\n    return sum(range(n))"
KNOWN = (
  LOOP,
  BUILTIN,
  FORMULA,
  "def total(n):\n    i, s = 1, 0\n    while i <= n:\n        s += i\n        i += 1\n    return s",
)


def fenced(code):
  return f"```python\n{code}\n```"


def brute_force_expected_distinct(labels, m):
  subsets = list(itertools.combinations(labels, m))
  return sum(len(set(s)) for s in subsets) / len(subsets)


def test_expected_distinct_matches_enumeration():
  labels = ["a", "a", "a", "b", "b", "c"]
  for m in range(1, len(labels) + 1):
    assert expected_distinct([3, 2, 1], m) == pytest.approx(brute_force_expected_distinct(labels, m))
  assert expected_distinct([3, 2, 1], 2) == pytest.approx(1 + 11 / 15)


def test_clusters_count_only_correct_samples_and_known_solutions():
  codes = [LOOP, LOOP_RENAMED, BUILTIN, WRONG, WRONG + "  # other junk", "def total(n"]
  passed = [True, True, True, False, False, False]
  clusters = correct_solution_clusters(codes, passed, behaviours=["x", "x", "y"], known_solutions=KNOWN)
  assert clusters["ast_clusters"] == [2, 1]  # LOOP and LOOP_RENAMED normalise alike; junk is not counted
  assert clusters["behaviour_clusters"] == [2, 1]
  assert clusters["known_solutions"] == 4
  assert clusters["known_clusters"] == [2, 1]  # two of the four known solutions were found
  with pytest.raises(ValueError, match="one behaviour per correct sample"):
    correct_solution_clusters(codes, passed, behaviours=["x"])


def test_a_usage_example_after_a_solution_does_not_make_it_another_solution():
  bare = "def total(n):\n    return n * (n + 1) // 2\n"
  with_usage = [
    bare,
    bare + "\nprint(total(3))\n",
    bare + "\n# Example usage:\nassert total(10) == 55\nif __name__ == '__main__':\n    print(total(10))\n",
  ]
  assert correct_solution_clusters(with_usage, [True] * 3)["ast_clusters"] == [3]
  # Usage that stores its results first: the assignments go with the prints that read them.
  stored = bare + "\nn: int = 3\nresult = total(n)\nprint(result)\n"
  assert correct_solution_clusters([bare, stored], [True] * 2)["ast_clusters"] == [2]
  method = "class Solution:\n    def total(self, n):\n        return n * (n + 1) // 2\n"
  method_usage = method + "s = Solution()\nanswer = Solution().total(4)\nprint(s.total(3), answer)\n"
  assert correct_solution_clusters([method, method_usage], [True] * 2)["ast_clusters"] == [2]
  # A constant a definition reads, or a write into an object, is part of the solution.
  scaled = "SCALE = 2\ndef total(n):\n    return n * (n + 1) // SCALE\n"
  table = "T = {}\nT[0] = 1\n" + bare
  counted = "calls = 0\ndef total(n):\n    global calls\n    calls += 1\n    return n * (n + 1) // 2\n"
  lam = "SCALE = 2\ntotal = lambda n: sum([i for i in range(n + 1)]) * SCALE // 2\n"
  forms = [bare, scaled, table, counted, lam]
  assert correct_solution_clusters(forms, [True] * 5)["ast_clusters"] == [1] * 5
  assert all(form.count("Assign(") >= 1 for form in map(solution_form, forms[1:]))
  loop = "def total(n):\n    s = 0\n    for i in range(n + 1):\n        s += i\n    return s\n"
  assert correct_solution_clusters([bare, loop + "print(total(3))\n"], [True] * 2)["ast_clusters"] == [1, 1]
  # A program reading standard input answers with what it prints: kept whole.
  stdin = ["n = int(input())\nprint(n * (n + 1) // 2)\n", "n = int(input())\nprint(sum(range(n + 1)))\n"]
  assert correct_solution_clusters(stdin, [True] * 2)["ast_clusters"] == [1, 1]


def test_diversity_at_m_ignores_problems_with_too_few_correct_samples():
  per_problem = [
    {"c": 4, "ast_clusters": [2, 2], "behaviour_clusters": [4], "known_solutions": 4, "known_clusters": [2, 2]},
    {"c": 1, "ast_clusters": [1], "behaviour_clusters": [1], "known_solutions": 4, "known_clusters": []},
    {"c": 3, "ast_clusters": [1, 1, 1], "behaviour_clusters": None, "known_solutions": None, "known_clusters": None},
  ]
  div = diversity_at_m(per_problem, m=2)
  assert div["num_problems"] == 2
  assert div["ast"] == pytest.approx((expected_distinct([2, 2], 2) + 2.0) / 2)
  assert div["behaviour"] == pytest.approx(1.0)  # the third problem has no probes
  assert div["known"] == pytest.approx(expected_distinct([2, 2], 2))
  assert div["known_share"] == pytest.approx(expected_distinct([2, 2], 2) / 4)
  assert div["ast_all"] == pytest.approx((2 + 1 + 3) / 3)


def test_probe_inputs_come_from_the_test_arguments():
  probes = generated_probe_inputs(RANGE_SUM)
  assert probes and all(len(args) == 1 for args in probes)
  assert (1,) not in probes and (4,) not in probes  # the tests' own inputs tell correct samples nothing
  assert (0,) in probes and (1.5,) in probes  # zero and a float, where strategies part ways
  stdio = Problem("toy/stdio", "echo", tests=(TestCase("t", stdin="1", expected_stdout="1"),))
  assert generated_probe_inputs(stdio) == []


def test_behaviour_clusters_separate_strategies_not_spellings():
  completions = {RANGE_SUM.task_id: [fenced(c) for c in (LOOP, LOOP_RENAMED, BUILTIN, FORMULA, WRONG)]}
  with Sandbox(SandboxLimits(timeout_s=5.0, cpu_time_s=5.0), workers=2) as sandbox:
    result = evaluate([RANGE_SUM], completions, sandbox=sandbox)
    behaviours = correct_sample_behaviours([RANGE_SUM], result, sandbox)
  assert [s.passed for s in result.problems[0].samples] == [True, True, True, True, False]
  signatures = behaviours[RANGE_SUM.task_id]
  assert len(signatures) == 4
  # The two loops and sum(range) agree everywhere (range rejects a float); the formula returns a float.
  assert signatures[0] == signatures[1] == signatures[2] != signatures[3]
  summary = summarize(
    result, ks=(1,), num_resamples=20, behaviours=behaviours, known_solutions={RANGE_SUM.task_id: KNOWN}
  )
  entry = summary["per_problem"][0]
  assert entry["ast_clusters"] == [2, 1, 1] and entry["behaviour_clusters"] == [3, 1]
  assert entry["known_clusters"] == [2, 1, 1]
  assert summary["correct_diversity"]["num_problems"] == 1


def test_copies_of_a_program_are_probed_once_and_share_its_behaviour():
  class TimingSandbox:
    """Times out every other run, as a probe near its limit may on a loaded machine."""

    def __init__(self):
      self.programs = []

    def run_many(self, jobs):
      self.programs += [job.program for job in jobs]
      verdicts = [Verdict.PASSED if i % 2 == 0 else Verdict.TIMEOUT for i in range(len(jobs))]
      return [(TestRun("probe", v, stdout="@@probe 1"),) for v in verdicts]

  completions = {RANGE_SUM.task_id: [fenced(c) for c in (LOOP, LOOP, FORMULA, LOOP)]}
  with Sandbox(SandboxLimits(timeout_s=5.0, cpu_time_s=5.0), workers=1) as sandbox:
    result = evaluate([RANGE_SUM], completions, sandbox=sandbox)
  sandbox = TimingSandbox()
  signatures = correct_sample_behaviours([RANGE_SUM], result, sandbox)[RANGE_SUM.task_id]
  assert len(sandbox.programs) == 2  # LOOP once, FORMULA once
  assert signatures[0] == signatures[1] == signatures[3] != signatures[2]


def result(correct_by_task, codes=(LOOP, BUILTIN), n=4):
  """An evaluation with `c` correct samples of `n` per task id."""
  problems = []
  for task_id, c in correct_by_task.items():
    samples = [
      SampleResult(
        "",
        codes[i % len(codes)] if i < c else WRONG,
        "",
        (TestRun("t", Verdict.PASSED if i < c else Verdict.FAILED),),
        "",
      )
      for i in range(n)
    ]
    problems.append(ProblemResult(task_id, "easy" if task_id in ("d1", "t1") else "hard", tuple(samples)))
  return EvalResult(tuple(problems))


def test_comparison_chooses_on_dev_and_reports_on_test(tmp_path):
  """Two models, two settings, four problems: the table names each model's setting chosen on dev."""

  split = Split(dev=("d1", "d2"), test=("t1", "t2"), seed=0, dev_fraction=0.5)
  cold, hot = DecodingSetting(0.5, 20, 0.8), DecodingSetting(1.1, 20, 0.8)
  base = [
    Candidate("final", cold, summarize(result({"d1": 3, "d2": 3, "t1": 2, "t2": 2}), (1,), 20)["per_problem"]),
    Candidate("final", hot, summarize(result({"d1": 1, "d2": 1}), (1,), 20)["per_problem"]),
  ]
  tuned = [
    Candidate("final", cold, summarize(result({"d1": 2, "d2": 2, "t1": 4, "t2": 4}, (LOOP,)), (1,), 20)["per_problem"]),
    Candidate("final", hot, summarize(result({"d1": 4, "d2": 4, "t1": 3, "t2": 3}, (LOOP,)), (1,), 20)["per_problem"]),
  ]
  comparison = compare_models({"base": base, "ssd": tuned}, split, num_resamples=200)
  assert comparison["models"]["base"]["selected"]["setting"]["temperature"] == 0.5
  assert comparison["models"]["ssd"]["selected"]["setting"]["temperature"] == 1.1
  assert comparison["models"]["base"]["test"]["pass_at_k_curve"]["1"]["mean"] == pytest.approx(0.5)
  assert comparison["differences"]["ssd"]["pass@1"]["difference"] == pytest.approx(0.75 - 0.5)
  curve = comparison["differences"]["ssd"]["pass_at_k_curve"]  # paired intervals at every k, not only 1 and n
  assert list(curve) == ["1", "2", "3", "4"] and curve["1"] == comparison["differences"]["ssd"]["pass@1"]
  assert curve["2"]["difference"] == pytest.approx(1.0 - (1 - 1 / 6))  # pass@2 with 2 of 4 correct: 5/6
  # Both solve both test problems >= 2 times; ssd writes one program, base's two correct samples are two.
  assert comparison["differences"]["ssd"]["diversity_ast"]["difference"] == pytest.approx(1.0 - 2.0)
  assert list(comparison["models"]["base"]["test"]["by_difficulty"]) == ["easy", "hard"]
  table = comparison_table(comparison)
  assert "T=0.5 top_k=20 top_p=0.8" in table and "T=1.1 top_k=20 top_p=0.8" in table
  header = table.splitlines()[1]
  assert "pass@2" in header and "pass@3" not in header  # powers of two, 1 and n without the run's eval.ks
  # Each choice lies at an edge of its two-temperature grid, so the model's best may lie beyond it.
  assert [line for line in table.splitlines() if line.startswith("Grid edge")] == [
    "Grid edge: base's pass@1 choice (T=0.5) is the coldest temperature it was tried at; a colder one was not "
    "measured and may be better on dev (widen eval.grid.temperatures).",
    "Grid edge: ssd's pass@1 choice (T=1.1) is the hottest temperature it was tried at; a hotter one was not "
    "measured and may be better on dev (widen eval.grid.temperatures).",
  ]
  # A base best inside a wider grid is not named; the method's choice still is.
  middle = DecodingSetting(0.8, 20, 0.8)
  best_base = Candidate(
    "final", middle, summarize(result({"d1": 4, "d2": 4, "t1": 2, "t2": 2}), (1,), 20)["per_problem"]
  )
  worse_ssd = Candidate("final", middle, summarize(result({"d1": 1, "d2": 1}, (LOOP,)), (1,), 20)["per_problem"])
  widened = compare_models({"base": [*base, best_base], "ssd": [*tuned, worse_ssd]}, split, num_resamples=20)
  notes = [line for line in comparison_table(widened).splitlines() if line.startswith("Grid edge")]
  assert len(notes) == 1 and notes[0].startswith("Grid edge: ssd's pass@1 choice (T=1.1)")
  header = comparison_table(comparison | {"ks": [3]}).splitlines()[1]
  assert "pass@3" in header and "pass@2" not in header and "pass@4" in header
  weak = comparison_table(comparison | {"weak_sandbox": ["no user namespaces"]}).splitlines()
  assert weak[0] == "WEAK SANDBOX: verdicts were obtained without full isolation (no user namespaces)."
  assert weak[1:] == table.splitlines()
  candidates = comparison["models"]["base"]["candidates"]
  assert candidates[1]["test"] is None  # the setting dev did not choose was never run on test
  paths = write_comparison(comparison, tmp_path)
  assert all(path.is_file() for path in paths.values())
  with pytest.raises(ValueError, match="test problems"):
    compare_models({"base": base[1:]}, split)
  with pytest.raises(ValueError, match="tuned over the decoding settings"):  # a base left untuned
    compare_models({"base": base[:1], "ssd": tuned}, split)
  more_samples = [
    Candidate(
      c.checkpoint, c.setting, summarize(result({t: 4 for t in "d1 d2 t1 t2".split()}, n=8), (1,), 20)["per_problem"]
    )
    for c in tuned
  ]
  with pytest.raises(ValueError, match="samples per test problem differ"):
    compare_models({"base": base, "ssd": more_samples}, split)

  def doubled(candidates, task_id):  # That test problem sampled 8 times instead of 4.
    return [
      Candidate(c.checkpoint, c.setting, [p | {"n": 8} if p["task_id"] == task_id else p for p in c.per_problem])
      for c in candidates
    ]

  # The same sample counts over all (4 and 8) but not problem by problem: still refused, naming one.
  with pytest.raises(ValueError, match="samples per test problem differ .* on 2 problems, e.g. 't1'"):
    compare_models({"base": doubled(base, "t2"), "ssd": doubled(tuned, "t1")}, split)


def test_pass_at_n_is_also_compared_at_each_models_own_pass_at_n_choice():
  # The base's pass@1 choice (cold) is weak at pass@4 on test; at its own pass@4 choice (hot) it ties the
  # method, so the pass@4 gap at the pass@1 choices measures the temperature, not the training.
  split = Split(dev=("d1", "d2"), test=("t1", "t2"), seed=0, dev_fraction=0.5)
  cold, hot = DecodingSetting(0.5, 20, 0.8), DecodingSetting(1.1, 20, 0.8)

  def candidate(setting, counts):
    return Candidate("final", setting, summarize(result(counts), (1,), 20)["per_problem"])

  base = [
    candidate(cold, {"d1": 4, "d2": 0, "t1": 4, "t2": 0}),  # dev pass@1 0.5, pass@4 0.5
    candidate(hot, {"d1": 1, "d2": 1, "t1": 1, "t2": 1}),  # dev pass@1 0.25, pass@4 1.0
  ]
  ssd = [candidate(cold, {"d1": 2, "d2": 2, "t1": 1, "t2": 1}), candidate(hot, {"d1": 1, "d2": 1})]
  comparison = compare_models({"base": base, "ssd": ssd}, split, num_resamples=50, tune_at_n=True)
  assert comparison["differences"]["ssd"]["pass@n"]["difference"] == pytest.approx(0.5)  # at pass@1 choices
  assert comparison["models"]["base"]["selected_at_n"]["key"] == "final/T1.1_k20_p0.8"
  assert comparison["models"]["ssd"]["selected_at_n"]["key"] == "final/T0.5_k20_p0.8"  # a tie keeps grid order
  assert comparison["models"]["base"]["selected_at_n"]["test_pass_at_n"]["mean"] == pytest.approx(1.0)
  assert comparison["differences"]["ssd"]["pass@n_at_own_best"]["difference"] == pytest.approx(0.0)
  table = comparison_table(comparison)
  assert "pass@4 with each model at its own best for pass@4" in table
  assert "base  T=1.1 top_k=20 top_p=0.8" in table
  assert "selected_at_n" not in compare_models({"base": base, "ssd": ssd}, split, num_resamples=50)["models"]["base"]
  with pytest.raises(ValueError, match=r"model 'base': its pass@4 choice final/T1.1_k20_p0.8 .* no results"):
    compare_models({"base": [base[0], candidate(hot, {"d1": 1, "d2": 1})]}, split, tune_at_n=True)


def test_a_diversity_mean_over_fewer_problems_says_over_how_many(tmp_path):
  """ssd solves both test problems twice but has behaviour data on one: its behaviour mean is over 1, not 2."""
  split = Split(dev=("d1", "d2"), test=("t1", "t2"), seed=0, dev_fraction=0.5)
  setting = DecodingSetting(0.5, 20, 0.8)
  per_problem = summarize(result({"d1": 2, "d2": 2, "t1": 2, "t2": 2}), (1,), 20)["per_problem"]
  for p in per_problem:  # every problem has behaviour clusters, as probes give them
    p["behaviour_clusters"] = list(p["ast_clusters"])
  partial = [dict(p) for p in per_problem]
  partial[3]["behaviour_clusters"] = None  # t2: no probe results
  comparison = compare_models(
    {"base": [Candidate("final", setting, per_problem)], "ssd": [Candidate("final", setting, partial)]}, split
  )
  assert comparison["models"]["ssd"]["test"]["diversity"]["measured"] == {"ast": 2, "behaviour": 1, "known": 0}
  rows = {line.split()[0]: line for line in comparison_table(comparison).splitlines()[-2:]}
  assert rows["base"].split()[1:4] == ["2", "2.00", "2.00"]  # means over all of its problems: no count
  assert rows["ssd"].split()[1:5] == ["2", "2.00", "2.00", "(1)"]
