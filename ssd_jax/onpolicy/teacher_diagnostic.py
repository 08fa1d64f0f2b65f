"""Is the in-context teacher better than the student? pass@1 with a demonstration / feedback vs the plain prompt.

Self-distillation only helps when the teacher (the same weights, shown more context) solves more than the
student. Before training, on a few problems, this measures three pass@1 values with the same decoding:

* student: the plain prompt;
* teacher with the demonstration: the prompt with the problem's reference solution as demonstration;
* teacher with feedback: the prompt with the sandbox's feedback on the student's first sample, on the problems
  where that sample failed; the student's pass@1 there is counted on its other samples. Counted on the
  samples that chose the problem (those with a failure among them), it would be biased low, in the
  teacher's favour; the other samples are independent draws, so with `diagnostic_samples` >= 2 it is not.

Each is the mean over problems of the fraction of passing samples; each teacher - student difference on the
same problems comes with a paired t interval over problems (a few problems give a wide one). A teacher
that is not better than the student on the same problems gets a warning: its gradients would pull the student
towards worse answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ssd_jax.data.problems import Problem
from ssd_jax.evals.pass_at_k import paired_difference, paired_difference_text
from ssd_jax.onpolicy import teacher_context as tc

Messages = list[dict[str, str]]
# (prompt ids per prompt) -> the sampled completion texts of each prompt.
SampleTexts = Callable[[list[list[int]]], list[list[str]]]
# (problems, completion texts by task id) -> per task id, one (passed, feedback) per completion.
Judge = Callable[[Sequence[Problem], Mapping[str, list[str]]], Mapping[str, list[tuple[bool, str]]]]


@dataclasses.dataclass(frozen=True)
class DiagnosticInputs:
  """What the diagnostic samples and grades.

  Attributes:
    problems: the problems (a few suffice).
    messages: each problem's student chat messages.
    render: chat messages -> prompt ids (the chat template with the assistant turn opened).
    sample_texts: draws completions of each prompt with the rollout decoding.
    judge: runs completions against the problems' tests.
    templates: the teacher context templates.
    reference_demonstration: a problem -> its reference solution rendered as an answer ('' for none).
    max_prompt_len: teacher prompts longer than this are left out (as the learner leaves such rollouts without a
      teacher), and so is that problem from the comparison.
  """

  problems: Sequence[Problem]
  messages: Sequence[Messages]
  render: Callable[[Messages], list[int]]
  sample_texts: SampleTexts
  judge: Judge
  templates: tc.TeacherTemplates
  reference_demonstration: Callable[[Problem], str]
  max_prompt_len: int


def _fitting(inputs: DiagnosticInputs, prompts: dict[int, list[int]]) -> tuple[list[int], list[list[int]]]:
  """The problem indices whose prompt fits `max_prompt_len`, and those prompts."""
  kept = [i for i, ids in prompts.items() if len(ids) <= inputs.max_prompt_len]
  return kept, [prompts[i] for i in kept]


def _pass_rates(inputs: DiagnosticInputs, indices: list[int], prompts: list[list[int]]) -> tuple[list, list[float]]:
  """Samples and grades `prompts` (one per problem index); returns the judged samples and each pass rate."""
  if not indices:
    return [], []
  texts = inputs.sample_texts(prompts)
  problems = [inputs.problems[i] for i in indices]
  judged = inputs.judge(problems, {p.task_id: t for p, t in zip(problems, texts, strict=True)})
  results = [list(judged[p.task_id]) for p in problems]
  return results, [float(np.mean([passed for passed, _ in r])) if r else 0.0 for r in results]


def _mean(values: list[float]) -> float | None:
  return float(np.mean(values)) if values else None


def teacher_diagnostic(inputs: DiagnosticInputs) -> dict:
  """Measures student and teacher pass@1; see the module docstring.

  Returns:
    A JSON-serialisable dict: `student_pass1`, `teacher_demonstration_pass1` (and the student's on the same
    problems, `student_pass1_on_demonstration_problems`), `teacher_feedback_pass1` (and
    `student_pass1_on_feedback_problems`, on the samples after the first), the problem counts,
    `demonstration_minus_student` and `feedback_minus_student` (paired differences with 95% t intervals, or
    None), and `warnings` (a list of sentences).
  """
  everyone, student_prompts = _fitting(inputs, {i: inputs.render(list(m)) for i, m in enumerate(inputs.messages)})
  results, rates = _pass_rates(inputs, everyone, student_prompts)
  student_results, student = dict(zip(everyone, results)), dict(zip(everyone, rates))

  def teacher_prompt(i: int, choice: tc.ContextChoice) -> list[int]:
    return inputs.render(tc.teacher_messages(inputs.messages[i], choice, inputs.templates))

  with_demo, demo_prompts = _fitting(
    inputs,
    {
      i: teacher_prompt(i, tc.ContextChoice(inputs.reference_demonstration(inputs.problems[i]), None))
      for i in everyone
      if inputs.reference_demonstration(inputs.problems[i])
    },
  )
  _, demo = _pass_rates(inputs, with_demo, demo_prompts)
  demo_by_problem = dict(zip(with_demo, demo))
  # The first sample chooses the problem and gives the feedback; the others give the student's rate there.
  first_failure = {i: r[0][1] for i, r in student_results.items() if len(r) > 1 and not r[0][0]}
  with_feedback, feedback_prompts = _fitting(
    inputs,
    {
      i: teacher_prompt(i, tc.ContextChoice(None, tc.feedback_context(f, inputs.templates)))
      for i, f in first_failure.items()
    },
  )
  _, feedback = _pass_rates(inputs, with_feedback, feedback_prompts)
  feedback_by_problem = dict(zip(with_feedback, feedback))
  student_on_feedback = {i: float(np.mean([passed for passed, _ in student_results[i][1:]])) for i in with_feedback}

  def paired(teacher: dict[int, float], baseline: dict[int, float]) -> dict[str, float] | None:
    if not teacher:
      return None
    indices = sorted(teacher)
    return paired_difference([teacher[i] for i in indices], [baseline[i] for i in indices])

  out = {
    "problems": len(everyone),
    "student_pass1": _mean(list(student.values())),
    "demonstration_problems": len(with_demo),
    "teacher_demonstration_pass1": _mean(demo),
    "student_pass1_on_demonstration_problems": _mean([student[i] for i in with_demo]),
    "feedback_problems": len(with_feedback),
    "teacher_feedback_pass1": _mean(feedback),
    "student_pass1_on_feedback_problems": _mean(list(student_on_feedback.values())),
    "demonstration_minus_student": paired(demo_by_problem, student),
    "feedback_minus_student": paired(feedback_by_problem, student_on_feedback),
  }
  warnings = []
  for kind, teacher_key, student_key in (
    ("demonstration", "teacher_demonstration_pass1", "student_pass1_on_demonstration_problems"),
    ("feedback", "teacher_feedback_pass1", "student_pass1_on_feedback_problems"),
  ):
    if out[teacher_key] is not None and out[teacher_key] <= out[student_key]:
      warnings.append(
        f"the teacher shown the {kind} (pass@1 {out[teacher_key]:.3f}) is not better than the student on the "
        f"same problems ({out[student_key]:.3f}): distilling towards it can only pull the student down"
      )
  out["warnings"] = warnings
  return out


def format_diagnostic(result: Mapping) -> str:
  """A few lines for the console."""

  def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"

  def interval(key: str) -> str:
    d = result.get(key)  # Absent from diagnostics recorded before the intervals were added.
    return "" if not d else f", {paired_difference_text(d, counts=True)}"

  lines = [
    f"teacher diagnostic on {result['problems']} problems (pass@1, %): student {pct(result['student_pass1'])}; "
    f"teacher + demonstration {pct(result['teacher_demonstration_pass1'])} "
    f"(student {pct(result['student_pass1_on_demonstration_problems'])} on those "
    f"{result['demonstration_problems']}{interval('demonstration_minus_student')}); teacher + feedback "
    f"{pct(result['teacher_feedback_pass1'])} (student {pct(result['student_pass1_on_feedback_problems'])} on those "
    f"{result['feedback_problems']}{interval('feedback_minus_student')})"
  ]
  lines += [f"WARNING: {w}" for w in result["warnings"]]
  return "\n".join(lines)
