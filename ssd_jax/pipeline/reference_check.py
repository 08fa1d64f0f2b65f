"""Reference solutions a teacher is shown as correct are graded first: one that fails its own tests is dropped.

SDSD/OPSD's teacher reads a problem's reference solution under "Here is a correct solution"; a dataset whose
reference is wrong (or whose tests disagree with it) would teach the student from a wrong answer labelled
right, so each reference runs once in the sandbox, as a completion would, before any method or the teacher
diagnostic shows it. Problems without tests keep their reference (nothing can grade it).
"""

from __future__ import annotations

import dataclasses

from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.evals import Sandbox, evaluate
from ssd_jax.onpolicy.rollouts import reference_demonstration


@dataclasses.dataclass(frozen=True)
class ReferenceCheck:
  """What grading the references found.

  Attributes:
    prompts: the prompt set with every failing reference solution removed (the problems otherwise unchanged).
    graded: how many references ran (those of problems with tests).
    failed: task ids whose reference failed, in prompt order.
  """

  prompts: PromptSet
  graded: int
  failed: tuple[str, ...]


def drop_failing_references(prompts: PromptSet, sandbox: Sandbox) -> ReferenceCheck:
  """Grades each problem's reference solution, rendered as an answer, and removes the ones that fail.

  Args:
    prompts: the training problems with their prompts.
    sandbox: the pool the rollouts are graded in.
  """
  graded = [p for p in prompts.problems if p.tests and p.reference_solution.strip()]
  if not graded:
    return ReferenceCheck(prompts, 0, ())
  result = evaluate(graded, {p.task_id: [reference_demonstration(p)] for p in graded}, sandbox=sandbox).by_task_id()
  failed = {p.task_id for p in graded if not result[p.task_id].samples[0].passed}
  problems = tuple(
    dataclasses.replace(p, reference_solution="") if p.task_id in failed else p for p in prompts.problems
  )
  return ReferenceCheck(
    dataclasses.replace(prompts, problems=problems),
    len(graded),
    tuple(p.task_id for p in graded if p.task_id in failed),
  )
