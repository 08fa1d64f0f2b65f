"""A reference solution is shown to the teacher as correct only after it passes its own problem's tests."""

import dataclasses

from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.evals import Sandbox, SandboxLimits
from ssd_jax.pipeline.reference_check import drop_failing_references
from ssd_jax.tasks import builtin_problems


def test_a_reference_that_fails_its_tests_is_dropped_and_the_rest_kept():
  right, wrong, untested = builtin_problems("synth", 3, seed=0)
  wrong = dataclasses.replace(wrong, reference_solution=right.reference_solution)  # another problem's answer
  untested = dataclasses.replace(untested, tests=())
  problems = (right, wrong, untested)
  prompts = PromptSet(problems, tuple([{"role": "user", "content": p.question}] for p in problems), ((1,),) * 3)
  with Sandbox(SandboxLimits(timeout_s=10.0, cpu_time_s=10.0), workers=1, allow_weak_sandbox=True) as sandbox:
    checked = drop_failing_references(prompts, sandbox)
  assert checked.graded == 2 and checked.failed == (wrong.task_id,)
  kept = checked.prompts.problems
  assert kept[0] == right and kept[2] == untested  # nothing can grade an untested reference: it stays
  assert (
    kept[1].reference_solution == ""
    and dataclasses.replace(kept[1], reference_solution=wrong.reference_solution) == wrong
  )
  assert checked.prompts.ids == prompts.ids and checked.prompts.messages == prompts.messages
