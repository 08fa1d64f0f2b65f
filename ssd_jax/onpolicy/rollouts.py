"""One on-policy step's data: sample G rollouts per prompt, run them in the sandbox, build teacher inputs.

The student samples with its current parameters through the run's sampler (same mesh; a weight copy only
with `mesh.decode_weights='tensor'`);
the sandbox judges every rollout; each group of G siblings picks its teacher contexts
(`teacher_context.choose_contexts`); and the rollouts are packed into fixed-shape arrays
(`ssd_jax.train.distill_batch`) so the distillation step compiles once. Rollouts whose teacher gets no
context (or whose teacher prompt does not fit) stay in the batch with weight 0.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ssd_jax.data.problems import Problem
from ssd_jax.data.prompt_set import PromptSet, chat_prompt_ids
from ssd_jax.evals import Sandbox, evaluate
from ssd_jax.onpolicy import teacher_context as tc
from ssd_jax.sampling.completions import graded_completion_text
from ssd_jax.sampling.generate import Generation, Sampler
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.tasks import render_answer
from ssd_jax.train.distill_batch import pack_distill_batch


@dataclasses.dataclass(frozen=True)
class RolloutSetup:
  """Everything that stays fixed across steps.

  Attributes:
    tokenizer: the model's tokenizer (chat template, stop ids, pad id).
    sampler: the run's sampler; its max_len covers prompt_width + max_new_tokens.
    sampling: the rollout decoding parameters.
    max_new_tokens: response width R.
    group_size: G rollouts per prompt.
    prompt_width: student prompt width Ps.
    teacher_prompt_width: teacher prompt width Pt.
    sandbox: the execution pool.
    templates: teacher context templates.
  """

  tokenizer: Any
  sampler: Sampler
  sampling: SamplingParams
  max_new_tokens: int
  group_size: int
  prompt_width: int
  teacher_prompt_width: int
  sandbox: Sandbox
  templates: tc.TeacherTemplates


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
  """Which context the teacher sees: a `CONTEXT_KINDS` entry, whether references may stand in, and whether the
  feedback text is blanked (the teacher is then told only that the attempt failed: an ablation)."""

  context: str
  use_reference: bool
  blank_feedback: bool = False


@dataclasses.dataclass(frozen=True)
class StepData:
  """A step's packed batch and what it says about the rollouts.

  Attributes:
    batch: numpy arrays of `distill_batch.BATCH_KEYS`, B = prompts x G rows.
    reward: fraction of rollouts that passed every test.
    context_fraction: fraction of rollouts whose teacher got a context (the scored ones).
    response_tokens: mean rollout length in tokens.
    seconds: wall-clock of 'sampling', 'execution' and 'contexts'.
  """

  batch: dict[str, np.ndarray]
  reward: float
  context_fraction: float
  response_tokens: float
  seconds: dict[str, float]


def sample_rollouts(
  setup: RolloutSetup, params: Any, prompt_ids: Sequence[Sequence[int]], seed: int
) -> list[Generation]:
  """G rollouts per prompt from the current student, ordered by (prompt, sample)."""
  return setup.sampler.generate(
    params,
    prompt_ids,
    setup.sampling,
    n=setup.group_size,
    max_new_tokens=setup.max_new_tokens,
    stop_ids=setup.tokenizer.stop_ids,
    seed=seed,
    progress=False,
  )


def reference_demonstration(problem: Problem) -> str:
  """The reference solution as an answer would show it ('' when the problem has none)."""
  code = problem.reference_solution.strip()
  return render_answer(code) if code else ""


def build_step_data(
  setup: RolloutSetup,
  spec: TeacherSpec,
  prompts: PromptSet,
  generations: Sequence[Generation],
  *,
  seed: int,
  seconds: dict[str, float] | None = None,
) -> StepData:
  """Executes the rollouts, picks each one's teacher context and packs the batch.

  Args:
    setup: the fixed parts.
    spec: the teacher's context kind.
    prompts: the step's P problems (distinct task ids) with their student prompts (what the rollouts were
      sampled from).
    generations: P x G rollouts ordered by (prompt, sample).
    seed: picks among successful siblings.
    seconds: timings measured so far (e.g. 'sampling'); 'execution' and 'contexts' are added.
  """
  seconds = dict(seconds or {})
  problems, messages, prompt_ids = prompts.problems, prompts.messages, prompts.ids
  group = setup.group_size
  if len(generations) != len(problems) * group:
    raise ValueError(f"{len(generations)} rollouts for {len(problems)} problems x G={group}")
  texts = [graded_completion_text(setup.tokenizer, g) for g in generations]
  start = time.perf_counter()
  result = evaluate(
    problems,
    {p.task_id: texts[i * group : (i + 1) * group] for i, p in enumerate(problems)},
    sandbox=setup.sandbox,
    feedback_chars=setup.templates.max_feedback_chars,  # Whole failures within the teacher's budget.
  ).by_task_id()
  seconds["execution"] = time.perf_counter() - start

  start = time.perf_counter()
  rng = random.Random(seed)
  teacher_prompts, weights, passed = [], [], []
  for i, problem in enumerate(problems):
    samples = result[problem.task_id].samples
    attempts = [tc.Attempt(texts[i * group + j], s.passed, s.feedback) for j, s in enumerate(samples)]
    passed += [a.passed for a in attempts]

    def teacher_ids(choice, i=i):
      return chat_prompt_ids(setup.tokenizer, tc.teacher_messages(messages[i], choice, setup.templates))

    choices = tc.choose_contexts(
      attempts,
      kind=spec.context,
      templates=setup.templates,
      rng=rng,
      reference_solution=reference_demonstration(problem) if spec.use_reference else "",
      fits=lambda choice: len(teacher_ids(choice)) <= setup.teacher_prompt_width,
    )
    for choice in choices:
      # Whether it fits is decided on the real feedback, so the blank-feedback ablation keeps SDPO's
      # demonstrations and weights and differs from it only in the text shown, unless the blank text is
      # the longer one ("No tests were run." is shorter) and does not fit.
      ids = teacher_ids(choice)
      fits = len(ids) <= setup.teacher_prompt_width
      if spec.blank_feedback and choice.feedback is not None:
        choice = dataclasses.replace(choice, feedback=tc.feedback_context("", setup.templates))
        ids = teacher_ids(choice)
        fits = fits and len(ids) <= setup.teacher_prompt_width
      teacher_prompts.append(ids if fits else list(prompt_ids[i]))
      weights.append(1.0 if choice.has_context and fits else 0.0)
  batch = pack_distill_batch(
    [prompt_ids[g.prompt_index] for g in generations],
    teacher_prompts,
    [g.token_ids for g in generations],
    prompt_width=setup.prompt_width,
    teacher_prompt_width=setup.teacher_prompt_width,
    response_width=setup.max_new_tokens,
    row_weights=weights,
    pad_id=setup.tokenizer.pad_id or 0,
  )
  seconds["contexts"] = time.perf_counter() - start
  return StepData(
    batch=batch,
    reward=float(np.mean(passed)),
    context_fraction=float(np.mean(weights)),
    response_tokens=float(np.mean([g.num_tokens for g in generations])),
    seconds=seconds,
  )


def collect_step_data(
  setup: RolloutSetup, spec: TeacherSpec, params: Any, prompts: PromptSet, *, seed: int
) -> StepData:
  """Samples with `params`, then `build_step_data`; timings of each part included."""
  start = time.perf_counter()
  generations = sample_rollouts(setup, params, prompts.ids, seed)
  sampling = time.perf_counter() - start
  return build_step_data(setup, spec, prompts, generations, seed=seed, seconds={"sampling": sampling})
