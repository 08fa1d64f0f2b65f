"""A held-out evaluation of in-memory parameters: n samples per problem, sandbox, pass@k and diversity.

Used between training steps, so it takes the live parameters rather than a model directory; the final
models are evaluated by the `eval` stage like every other model of the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ssd_jax.evals import Sandbox, evaluate, summarize
from ssd_jax.evals.problems import Problem
from ssd_jax.methods.sampling_setup import completion_text
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams


@dataclasses.dataclass(frozen=True)
class HeldoutSet:
  """The problems, their prompt ids, and how to sample them.

  Attributes:
    problems: held-out problems.
    prompt_ids: their prompts, token ids.
    sampler: a sampler whose max_len fits the prompts plus max_new_tokens.
    decoding: decoding parameters (T_eval, top-k, top-p).
    n: samples per problem.
    max_new_tokens: response cap.
    ks: pass@k for these k (those above n are dropped).
  """

  problems: tuple[Problem, ...]
  prompt_ids: tuple[tuple[int, ...], ...]
  sampler: Sampler
  decoding: SamplingParams
  n: int
  max_new_tokens: int
  ks: tuple[int, ...]


def evaluate_params(
  heldout: HeldoutSet, params: Any, tokenizer, sandbox: Sandbox, *, seed: int, bootstrap: int = 200
) -> dict:
  """The `ssd_jax.evals.summarize` dict of `params` on the held-out set."""
  generations = heldout.sampler.generate(
    params,
    heldout.prompt_ids,
    heldout.decoding,
    n=heldout.n,
    max_new_tokens=heldout.max_new_tokens,
    stop_ids=tokenizer.stop_ids,
    seed=seed,
    progress=False,
  )
  completions: dict[str, list[str]] = {p.task_id: [] for p in heldout.problems}
  for generation in generations:
    completions[heldout.problems[generation.prompt_index].task_id].append(completion_text(tokenizer, generation))
  result = evaluate(heldout.problems, completions, sandbox=sandbox)
  return summarize(result, heldout.ks, num_resamples=bootstrap, seed=seed)


def summary_scalars(summary: dict, prefix: str = "eval/") -> dict[str, float]:
  """Flat metrics: pass@k for each k, distinct programs and behaviours per problem."""
  scalars = {f"{prefix}pass@{k}": block["mean"] for k, block in summary["pass_at_k"].items()}
  diversity = summary["diversity"]
  scalars[f"{prefix}distinct_programs"] = diversity["mean_distinct_programs"]
  scalars[f"{prefix}distinct_behaviours"] = diversity["mean_distinct_behaviours"]
  return scalars


def held_out(
  problems: Sequence[Problem],
  prompt_ids: Sequence[Sequence[int]],
  sampler: Sampler,
  decoding: SamplingParams,
  *,
  n: int,
  max_new_tokens: int,
  ks: Sequence[int],
) -> HeldoutSet:
  """Builds a HeldoutSet (tuples, so it is immutable)."""
  return HeldoutSet(
    tuple(problems),
    tuple(tuple(int(t) for t in ids) for ids in prompt_ids),
    sampler,
    decoding,
    n,
    max_new_tokens,
    tuple(ks),
  )
