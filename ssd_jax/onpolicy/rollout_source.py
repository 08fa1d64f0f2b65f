"""The on-policy batch source: each step's rollouts of the current student, a pure function of the step.

A step's problems are epochs of a seeded permutation and its sampling seed is derived from the run's, so a
resumed run draws the same prompts and seeds; the rows are placed on the mesh (each process its own) with
the importance weights' denominator computed by the parameters that sampled them.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.onpolicy.rollouts import RolloutSetup, TeacherSpec, collect_step_data
from ssd_jax.train.distill_batch import process_rows


def step_problem_indices(num_problems: int, per_step: int, step: int, seed: int) -> np.ndarray:
  """The distinct problems of `step`: epochs of a seeded permutation, a pure function of the step."""
  if per_step > num_problems:
    raise ValueError(f"self_distill.prompts_per_step = {per_step} exceeds the {num_problems} usable problems")
  epoch, offset = divmod(step, num_problems // per_step)
  order = np.random.default_rng([seed, epoch]).permutation(num_problems)
  return order[offset * per_step : (offset + 1) * per_step]


def step_seed(seed: int, step: int) -> int:
  return (seed * 1_000_003 + step) % 2**32


class RolloutSource:
  """The batch of each step: rollouts of the current student on that step's problems, packed and placed.

  With `updates_per_batch` = u, the rollouts of step u*j (its problems and seed are those of rollout batch j)
  train steps u*j .. u*j + u - 1; a run resumed inside such a group redraws them from the resumed student.
  With `mini_batches` = m, step u*j + i takes the (i mod m)-th of m slices of that batch, each the rollouts
  of P/m prompts (rows are ordered by prompt); each slice is placed, and its importance weights' denominator
  computed, when the batch is drawn, with the parameters that sampled it.
  """

  def __init__(
    self,
    setup: RolloutSetup,
    spec: TeacherSpec,
    prompts: PromptSet,
    per_step: int,
    seed: int,
    place,
    updates_per_batch: int = 1,
    behaviour=None,
    mini_batches: int = 1,
  ):
    if updates_per_batch < 1:
      raise ValueError(f"updates_per_batch must be >= 1, got {updates_per_batch}")
    if mini_batches < 1 or per_step % mini_batches or updates_per_batch % mini_batches:
      raise ValueError(
        f"mini_batches = {mini_batches} must divide prompts per step ({per_step}) and updates_per_batch "
        f"({updates_per_batch})"
      )
    self._setup, self._spec, self._prompts = setup, spec, prompts
    self._per_step, self._seed, self._place = per_step, seed, place
    self._updates, self._minis = updates_per_batch, mini_batches
    self._behaviour = behaviour
    self._cached: tuple[int, list[Any], dict[str, float]] | None = None

  def next_batch(self, step: int, state: Any) -> tuple[Any, dict[str, float]]:
    """Step `step`'s placed rows and its rollout scalars; `state` (a `LearnerState`) samples a new batch."""
    rollout_batch = step // self._updates
    if self._cached is None or self._cached[0] != rollout_batch:
      chosen = step_problem_indices(len(self._prompts), self._per_step, rollout_batch, self._seed)
      data = collect_step_data(
        self._setup,
        self._spec,
        state.train.params,
        self._prompts.select(chosen),
        seed=step_seed(self._seed, rollout_batch),
      )
      scalars = dict(reward=data.reward, context_fraction=data.context_fraction, response_tokens=data.response_tokens)
      scalars.update({f"seconds_{k}": v for k, v in data.seconds.items()})
      minis = [self._placed(mini, state.train.params) for mini in _row_slices(data.batch, self._minis)]
      self._cached = (rollout_batch, minis, scalars)
    return self._cached[1][step % self._updates % self._minis], dict(self._cached[2])

  def _placed(self, batch: dict[str, np.ndarray], params: Any) -> Any:
    # Every process built the whole batch (same seeds, same verdicts); each places only its rows.
    placed = self._place(process_rows(batch, jax.process_index(), jax.process_count()))
    if self._behaviour is not None:  # the importance weights' denominator, from the parameters that sampled
      placed = self._behaviour(params, placed)
    return placed

  def reads_state(self, step: int) -> bool:
    return step % self._updates == 0  # A new rollout batch samples the student.

  def get_state(self) -> None:
    return None  # A pure function of the step.

  def set_state(self, state: Any) -> None:
    del state


def _row_slices(batch: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
  """`count` consecutive equal slices of a batch's rows (the batch itself for one)."""
  if count == 1:
    return [batch]
  rows = next(iter(batch.values())).shape[0]
  size = rows // count
  return [{key: value[i * size : (i + 1) * size] for key, value in batch.items()} for i in range(count)]
