"""A held-out evaluation of in-memory parameters: n samples per problem, sandbox, pass@k and diversity.

Used between training steps (as a loop hook), so it takes the live parameters rather than a model directory;
the final models are evaluated by the `eval` stage like every other model of the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.evals import Sandbox, evaluate, summarize
from ssd_jax.sampling.completions import graded_completion_text
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.train.loop import Hook
from ssd_jax.train.metrics import truncate_jsonl


@dataclasses.dataclass(frozen=True)
class HeldoutSet:
  """The problems with their prompts, and how to sample them.

  Attributes:
    prompts: held-out problems and their prompts.
    sampler: a sampler whose max_len fits the prompts plus max_new_tokens.
    decoding: decoding parameters (T_eval, top-k, top-p).
    n: samples per problem.
    max_new_tokens: response cap.
    ks: pass@k for these k (those above n are dropped).
  """

  prompts: PromptSet
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
    heldout.prompts.ids,
    heldout.decoding,
    n=heldout.n,
    max_new_tokens=heldout.max_new_tokens,
    stop_ids=tokenizer.stop_ids,
    seed=seed,
    progress=False,
  )
  problems = heldout.prompts.problems
  completions: dict[str, list[str]] = {p.task_id: [] for p in problems}
  for generation in generations:
    completions[problems[generation.prompt_index].task_id].append(graded_completion_text(tokenizer, generation))
  result = evaluate(problems, completions, sandbox=sandbox)
  return summarize(result, heldout.ks, num_resamples=bootstrap, seed=seed)


def summary_scalars(summary: dict, prefix: str = "eval/") -> dict[str, float]:
  """Flat metrics: pass@k for each k, distinct programs and behaviours per problem."""
  scalars = {f"{prefix}pass@{k}": block["mean"] for k, block in summary["pass_at_k"].items()}
  diversity = summary["diversity"]
  scalars[f"{prefix}distinct_programs"] = diversity["mean_distinct_programs"]
  scalars[f"{prefix}distinct_behaviours"] = diversity["mean_distinct_behaviours"]
  return scalars


class HeldoutHook(Hook):
  """Evaluates the student at the start (step 0) and every `every` steps and at `last_step`.

  Each summary is appended to `<out_dir>/heldout.jsonl` (process 0) and its scalars join the step's metrics.

  Args:
    heldout: the held-out set.
    params_of: the student's parameters from a loop state.
    tokenizer, sandbox: decode and execute the samples.
    seed: sampling seed (the same at every evaluation, so the curve compares like with like).
    every: steps between evaluations.
    last_step: the final step (always evaluated).
    out_dir: where `heldout.jsonl` goes.
    is_coordinator: whether this process writes.
  """

  def __init__(
    self,
    heldout: HeldoutSet,
    params_of,
    tokenizer,
    sandbox: Sandbox,
    *,
    seed: int,
    every: int,
    last_step: int,
    out_dir: str,
    is_coordinator: bool,
  ):
    self._heldout, self._params_of, self._tokenizer, self._sandbox = heldout, params_of, tokenizer, sandbox
    self._seed, self._every, self._last = seed, every, last_step
    self._out, self._write = out_dir, is_coordinator

  def _evaluate(self, step: int, state: Any) -> dict[str, float]:
    summary = evaluate_params(self._heldout, self._params_of(state), self._tokenizer, self._sandbox, seed=self._seed)
    if self._write:
      os.makedirs(self._out, exist_ok=True)
      with open(os.path.join(self._out, "heldout.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, **{k: summary[k] for k in ("pass_at_k", "diversity")}}) + "\n")
    return summary_scalars(summary)

  def begin(self, step: int, state: Any) -> dict[str, float] | None:
    if self._write:
      truncate_jsonl(os.path.join(self._out, "heldout.jsonl"), step)  # Steps after `step` are trained again.
    return self._evaluate(0, state) if step == 0 else None  # The starting point of the curve.

  def reads_state(self, step: int) -> bool:
    return step % self._every == 0 or step == self._last

  def after_step(self, step: int, state: Any) -> dict[str, float] | None:
    return self._evaluate(step, state) if self.reads_state(step) else None
