"""A one-problem rollout step for `rollouts.build_step_data`, without a model: two samples of two tokens."""

import types

from ssd_jax.onpolicy.teacher_context import TeacherTemplates


def one_problem_step(problem, teacher_prompt_width: int):
  """(setup, prompts, generations) of a step with `problem` sampled twice, prompt ids [5, 6]."""
  setup = types.SimpleNamespace(
    group_size=2,
    tokenizer=types.SimpleNamespace(pad_id=0),
    templates=TeacherTemplates(),
    sandbox=None,
    teacher_prompt_width=teacher_prompt_width,
    prompt_width=4,
    max_new_tokens=3,
  )
  prompts = types.SimpleNamespace(problems=[problem], messages=[[{"role": "user", "content": "q"}]], ids=[[5, 6]])
  generations = [
    types.SimpleNamespace(prompt_index=0, token_ids=[7, 8], logprob_sampled=[0.0, 0.0], num_tokens=2) for _ in range(2)
  ]
  return setup, prompts, generations
