"""Pre-training examples laid out as the self-distillation teacher sees a problem, each with a correct answer.

Self-distillation with a privileged-context teacher assumes a model that can use such context; a model trained
from scratch only learns that from examples of it. These examples show the question with a correct
demonstration, with the sandbox's feedback on a wrong attempt, or with both, rendered by the teacher's own
builders (`teacher_context`), then a correct answer of the built-in task. Where a demonstration is shown the
answer is that demonstration, as an instruct model copies a worked solution it is given: an answer drawn
apart from the demonstration would teach the model to ignore it, and the teacher would know no more than
the student (measured on the CPU default: teacher pass@1 below the student's).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ssd_jax.data.problems import Problem
from ssd_jax.data.sft_pipeline import Conversation
from ssd_jax.evals import SandboxLimits, evaluate
from ssd_jax.onpolicy import teacher_context as tc
from ssd_jax.tasks import render_answer, solutions_for, wrong_solutions_for
from ssd_jax.tasks.builtin import variant_weights

# The teacher's context layouts: what SDSD shows, what SDPO shows for a failed rollout without (feedback)
# and with (both) a successful sibling.
CONTEXT_LAYOUTS = ("demonstration", "feedback", "both")


def _correct_answer(problem: Problem, rng: random.Random) -> str:
  solutions = solutions_for(problem)
  return render_answer(rng.choices(solutions, weights=variant_weights(len(solutions)))[0])


def context_conversations(
  problems: Sequence[Problem],
  messages_for: Callable[[Problem], list[dict[str, str]]],
  templates: tc.TeacherTemplates,
  *,
  seed: int,
  limits: SandboxLimits = SandboxLimits(),
  workers: int | None = None,
  allow_weak_sandbox: bool = False,
) -> list[Conversation]:
  """Built-in problems laid out as the self-distillation teacher sees them, each with a correct answer.

  Each layout of CONTEXT_LAYOUTS takes an equal share, in a seeded order. A demonstration is a known
  correct solution drawn with the pre-training odds, and the answer repeats it; with feedback alone the
  answer is drawn with those odds. Feedback is what the sandbox reports for one of the problem's wrong
  solutions, really executed. The context goes through `teacher_context.choose_contexts` and
  `teacher_messages`, so caps and wording match the teacher's.

  Args:
    problems: built-in problems (their solutions and wrong solutions are regenerated from the task id).
    messages_for: the student's prompt messages of a problem.
    templates: the teacher's templates.
    seed: picks layouts, demonstrations, wrong attempts and answers deterministically.
    limits, workers, allow_weak_sandbox: the sandbox that runs the wrong attempts.

  Returns:
    One (teacher prompt messages, correct answer) pair per problem, in order.
  """
  rng = random.Random(f"pretrain-context:{seed}")
  layouts = [CONTEXT_LAYOUTS[i % len(CONTEXT_LAYOUTS)] for i in range(len(problems))]
  rng.shuffle(layouts)
  wrong = {
    p.task_id: render_answer(rng.choice(wrong_solutions_for(p)))
    for p, layout in zip(problems, layouts)
    if layout != "demonstration"
  }
  verdicts = (
    evaluate(
      [p for p in problems if p.task_id in wrong],
      {k: [v] for k, v in wrong.items()},
      limits=limits,
      workers=workers,
      allow_weak_sandbox=allow_weak_sandbox,
      feedback_chars=templates.max_feedback_chars,
    ).by_task_id()
    if wrong
    else {}
  )
  conversations = []
  for problem, layout in zip(problems, layouts):
    # The rollout being scored is attempt 0; a passing sibling (attempt 1) supplies the demonstration.
    attempts = []
    if layout == "demonstration":
      attempts.append(tc.Attempt("", passed=True, feedback=""))
    else:
      run = verdicts[problem.task_id].samples[0]
      attempts.append(tc.Attempt(wrong[problem.task_id], passed=run.passed, feedback=run.feedback))
    answer = _correct_answer(problem, rng)
    if layout != "feedback":
      attempts.append(tc.Attempt(answer, passed=True, feedback=""))
    kind = {"demonstration": "demonstration", "feedback": "feedback", "both": "feedback_or_demonstration"}[layout]
    choice = tc.choose_contexts(attempts, kind=kind, templates=templates)[0]
    messages = tc.teacher_messages(messages_for(problem), choice, templates)
    conversations.append((messages, answer))
  return conversations
