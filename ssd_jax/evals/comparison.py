"""Numbers of a tuned comparison: each model at its dev-chosen setting against the reference (the base) at its own.

Input: for every model, its candidates (a checkpoint evaluated at one decoding setting), each with the
per-problem records (`summarize`'s `per_problem`) of the problems it was run on: every dev problem,
and the test problems too for at least the candidate dev chooses. The best candidate of each model is
chosen on dev by `protocol.select_best`; everything reported comes from the test problems: pass@k for
k = 1..n, per difficulty, correct-solution diversity, and paired intervals (Student-t over problems) of each
model's difference from the reference. Every candidate's dev pass@1 / pass@n (and test, where it was run) is
kept for the temperature curves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from ssd_jax.evals.correct_diversity import DEFAULT_DIVERSITY_M, diversity_at_m, problem_diversity_at_m
from ssd_jax.evals.pass_at_k import paired_difference, pass_at_k, pass_at_k_curve, pass_at_k_with_ci
from ssd_jax.evals.protocol import DecodingSetting, counts_by_task, mean_pass_at_k, select_best
from ssd_jax.evals.splits import Split
from ssd_jax.evals.summary import difficulty_sort_key

DIVERSITY_FIELDS = {"ast": "ast_clusters", "behaviour": "behaviour_clusters", "known": "known_clusters"}


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One checkpoint of one model evaluated at one decoding setting.

  Attributes:
    checkpoint: 'final' or the training step it was saved at, e.g. 'step_20'.
    setting: the decoding setting.
    per_problem: `summarize`'s per-problem records of the problems it was run on.
  """

  checkpoint: str
  setting: DecodingSetting
  per_problem: Sequence[Mapping]

  @property
  def key(self) -> str:
    return f"{self.checkpoint}/{self.setting.label}"


def _restrict(
  per_problem: Sequence[Mapping], task_ids: Sequence[str], what: str = "the chosen candidate"
) -> list[Mapping]:
  by_id = {p["task_id"]: p for p in per_problem}
  missing = [t for t in task_ids if t not in by_id]
  if missing:
    raise ValueError(f"{what} has no results for {len(missing)} test problems, e.g. {missing[0]!r}")
  return [by_id[t] for t in task_ids]


def _split_scores(counts: Mapping[str, tuple[int, int]], ids: Sequence[str]) -> dict[str, float] | None:
  """pass@1 and pass@n over `ids`; None when the candidate was not run on all of them."""
  if not ids or any(t not in counts for t in ids):
    return None
  n = min(counts[t][0] for t in ids)
  return {"pass@1": mean_pass_at_k(counts, ids, 1), "pass@n": mean_pass_at_k(counts, ids, n), "n": n}


def _model_block(
  candidates: Sequence[Candidate], split: Split, metric_k: int, m: int, num_resamples: int, seed: int, at_n: bool
) -> tuple[dict, list[Mapping], list[Mapping] | None]:
  """The model's numbers, the per-problem test records of its selected candidate and, with `at_n`, those of
  its candidate chosen by dev pass@n."""
  by_key = {c.key: c for c in candidates}
  if len(by_key) != len(candidates):
    raise ValueError(f"candidates repeat a checkpoint/setting: {[c.key for c in candidates]}")
  counts = {key: counts_by_task(c.per_problem) for key, c in by_key.items()}
  selection = select_best(counts, split.dev, metric_k)
  chosen = by_key[selection.best]
  test = _restrict(chosen.per_problem, split.test)
  by_difficulty = {}
  for label in sorted({p["difficulty"] or "unspecified" for p in test}, key=difficulty_sort_key):
    group = [p["task_id"] for p in test if (p["difficulty"] or "unspecified") == label]
    by_difficulty[label] = {"num_problems": len(group), **_split_scores(counts[selection.best], group)}
  block = {
    "selected": {"key": chosen.key, "checkpoint": chosen.checkpoint, "setting": dataclasses.asdict(chosen.setting)},
    "candidates": [
      {
        "key": key,
        "checkpoint": c.checkpoint,
        "setting": dataclasses.asdict(c.setting),
        "dev": _split_scores(counts[key], split.dev),
        "test": _split_scores(counts[key], split.test),
      }
      for key, c in by_key.items()
    ],
    "test": {
      "num_problems": len(test),
      "pass_at_k_curve": pass_at_k_curve([p["n"] for p in test], [p["c"] for p in test], num_resamples, seed),
      "by_difficulty": by_difficulty,
      "diversity": diversity_at_m(test, m),
    },
  }
  if not at_n:
    return block, test, None
  n = min(counts[selection.best][t][0] for t in split.dev)
  chosen_at_n = by_key[select_best(counts, split.dev, n).best]
  what = f"its pass@{n} choice {chosen_at_n.key} (eval.tune_pass_at_n: the eval stage samples it on test)"
  test_at_n = _restrict(chosen_at_n.per_problem, split.test, what)
  num_samples = [p["n"] for p in test_at_n]
  block["selected_at_n"] = {
    "key": chosen_at_n.key,
    "checkpoint": chosen_at_n.checkpoint,
    "setting": dataclasses.asdict(chosen_at_n.setting),
    "test_pass_at_n": pass_at_k_with_ci(
      num_samples, [p["c"] for p in test_at_n], min(num_samples), num_resamples, seed
    ),
  }
  return block, test, test_at_n


def _pass_at_k_difference(model: Sequence[Mapping], reference: Sequence[Mapping], k: int):
  return paired_difference(
    [pass_at_k(p["n"], p["c"], k) for p in model], [pass_at_k(p["n"], p["c"], k) for p in reference]
  )


def _differences(model: Sequence[Mapping], reference: Sequence[Mapping], m: int):
  n = min(p["n"] for p in [*model, *reference])
  curve = {str(k): _pass_at_k_difference(model, reference, k) for k in range(1, n + 1)}
  differences = {"pass@1": curve["1"], "pass@n": curve[str(n)], "pass_at_k_curve": curve}
  for label, field in DIVERSITY_FIELDS.items():
    # Equal footing: only problems both models solved at least m times, each measured over m correct samples.
    pairs = [
      (problem_diversity_at_m(a, m, field), problem_diversity_at_m(b, m, field)) for a, b in zip(model, reference)
    ]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    differences[f"diversity_{label}"] = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
  return differences


def compare_models(
  candidates: Mapping[str, Sequence[Candidate]],
  split: Split,
  reference: str = "base",
  metric_k: int = 1,
  diversity_m: int = DEFAULT_DIVERSITY_M,
  num_resamples: int = 2000,
  seed: int = 0,
  tune_at_n: bool = False,
) -> dict:
  """Chooses every model's best candidate on dev and compares them on test against `reference`.

  Args:
    candidates: model name -> its candidates, in preference order for exact ties (see `select_best`).
    split: the dev/test split; every candidate must cover all of its problems.
      Every model must have run the reference's decoding settings, and the same number of samples per
      test problem.
    reference: the model the others are compared with (at its own best candidate).
    metric_k: the selection metric is dev pass@metric_k.
    diversity_m: correct samples per problem that diversity is measured at.
    num_resamples: bootstrap replicates of each model's own intervals.
    seed: bootstrap seed.
    tune_at_n: also choose every model's candidate by dev pass@n and compare test pass@n there (each model,
      the reference too, at its own pass@n choice); those candidates must have been run on test.

  Returns:
    A JSON-ready dict: "split", "reference", "metric", "diversity_m", "models" (per model: the
    selected candidate, every candidate's dev and test pass@1 / pass@n, and test pass@k for k = 1..n
    with intervals, by difficulty, and correct-solution diversity) and "differences" (per other model:
    paired t intervals of its test pass@1, pass@n, pass@k for every k ("pass_at_k_curve") and
    diversity minus the reference's). With
    `tune_at_n`, each model's "selected_at_n" (its pass@n choice and test pass@n) and, per other model,
    "pass@n_at_own_best": its test pass@n minus the reference's, each at its own pass@n choice.
  """
  if reference not in candidates:
    raise ValueError(f"the reference model {reference!r} is not among the compared models {sorted(candidates)}")
  grid = sorted({c.setting.label for c in candidates[reference]})
  for name, model_candidates in candidates.items():
    own = sorted({c.setting.label for c in model_candidates})
    if own != grid:  # A reference tuned on a smaller grid than a method is a baseline left untuned.
      raise ValueError(
        f"model {name!r} was tuned over the decoding settings {own}, the reference {reference!r} over {grid}; "
        "compare models tuned on the same grid"
      )
  models, per_problem, at_n = {}, {}, {}
  for name, model_candidates in candidates.items():
    try:
      models[name], per_problem[name], at_n[name] = _model_block(
        model_candidates, split, metric_k, diversity_m, num_resamples, seed, tune_at_n
      )
    except ValueError as e:
      raise ValueError(f"model {name!r}: {e}") from None
  for records, which in ((per_problem, "pass@1"), (at_n, "pass@n")):
    samples = {name: {p["task_id"]: p["n"] for p in problems} for name, problems in records.items() if problems}
    differ = sorted({t for counts in samples.values() for t, n in counts.items() if n != samples[reference][t]})
    if differ:
      raise ValueError(
        f"samples per test problem differ between models at their {which} choices on {len(differ)} problems, e.g. "
        f"{differ[0]!r}: { {name: counts[differ[0]] for name, counts in samples.items()} }; pass@k is compared at "
        "equal n"
      )
  differences = {
    name: _differences(per_problem[name], per_problem[reference], diversity_m)
    for name in candidates
    if name != reference
  }
  if tune_at_n:
    n = min(p["n"] for records in at_n.values() for p in records)
    for name, block in differences.items():
      block["pass@n_at_own_best"] = _pass_at_k_difference(at_n[name], at_n[reference], n)
  return {
    "split": {"dev": len(split.dev), "test": len(split.test), "seed": split.seed, "dev_fraction": split.dev_fraction},
    "reference": reference,
    "metric": f"pass@{metric_k}",
    "diversity_m": diversity_m,
    "models": models,
    "differences": differences,
  }
