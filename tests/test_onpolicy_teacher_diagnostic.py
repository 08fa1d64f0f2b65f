"""The teacher diagnostic: pass@1 with a demonstration / feedback vs the student's, and its warnings."""

import numpy as np
import pytest

from ssd_jax.data.problems import Problem
from ssd_jax.onpolicy.teacher_context import TeacherTemplates
from ssd_jax.onpolicy.teacher_diagnostic import DiagnosticInputs, format_diagnostic, teacher_diagnostic

SAMPLES = 4


def _inputs(solve_rate: dict[str, float], references=("ref0", "ref1", ""), max_prompt_len=1000):
  """Three problems; a prompt's samples pass at the rate its kind gets (by the text the prompt contains)."""
  problems = [Problem(task_id=f"t{i}", question=f"q{i}", reference_solution=r) for i, r in enumerate(references)]
  texts: dict[int, str] = {}

  def render(messages):
    content = messages[-1]["content"]
    key = len(texts) + 1000
    texts[key] = content
    return [key] * (1 + len(content) // 10)  # Longer contexts make longer prompts.

  def sample_texts(prompts):
    out = []
    for key, *_ in prompts:
      content = texts[key]
      kind = "demonstration" if "correct solution" in content else "feedback" if "failed" in content else "student"
      passing = round(solve_rate[kind] * SAMPLES)
      out.append([f"FAIL {kind}"] * (SAMPLES - passing) + ["PASS"] * passing)
    return out

  def judge(problems, completions):
    return {
      p.task_id: [(t == "PASS", "" if t == "PASS" else "expected 3, got 4") for t in completions[p.task_id]]
      for p in problems
    }

  return DiagnosticInputs(
    problems=problems,
    messages=[[{"role": "user", "content": p.question}] for p in problems],
    render=render,
    sample_texts=sample_texts,
    judge=judge,
    templates=TeacherTemplates(),
    reference_demonstration=lambda p: p.reference_solution,
    max_prompt_len=max_prompt_len,
  )


def test_competent_teacher_measured_without_warning():
  result = teacher_diagnostic(_inputs({"student": 0.25, "demonstration": 1.0, "feedback": 0.75}))
  assert result["student_pass1"] == pytest.approx(0.25)
  assert result["demonstration_problems"] == 2  # The problem without a reference gets no demonstration.
  assert result["teacher_demonstration_pass1"] == pytest.approx(1.0)
  assert result["feedback_problems"] == 3  # Every problem's first student sample failed.
  assert result["teacher_feedback_pass1"] == pytest.approx(0.75)
  assert result["student_pass1_on_feedback_problems"] == pytest.approx(1 / 3)  # The samples after the first.
  assert result["warnings"] == []
  # Both problems move by the same 0.75: no spread to scale an interval by, so none.
  assert result["demonstration_minus_student"] == {
    "difference": pytest.approx(0.75),
    "ci_low": None,
    "ci_high": None,
    "num_problems": 2,
    "wins": 2,
    "losses": 0,
    "sign_p": 0.5,
  }
  assert result["feedback_minus_student"]["difference"] == pytest.approx(0.75 - 1 / 3)
  assert (
    "teacher + demonstration 100.0 (student 25.0 on those 2, +75.0 (no spread: no CI) 2/0 p=0.50)"
    in format_diagnostic(result)
  )


def test_teacher_worse_than_student_is_warned():
  result = teacher_diagnostic(_inputs({"student": 0.5, "demonstration": 0.25, "feedback": 0.75}))
  assert len(result["warnings"]) == 1 and "demonstration" in result["warnings"][0]
  assert "WARNING" in format_diagnostic(result)


def test_student_that_never_fails_leaves_no_feedback_problems():
  result = teacher_diagnostic(_inputs({"student": 1.0, "demonstration": 1.0, "feedback": 0.0}))
  assert result["feedback_problems"] == 0 and result["teacher_feedback_pass1"] is None
  assert result["feedback_minus_student"] is None
  assert len(result["warnings"]) == 1  # Demonstration 1.0 is not better than a student at 1.0.


def test_teacher_prompts_that_do_not_fit_are_left_out():
  result = teacher_diagnostic(_inputs({"student": 0.25, "demonstration": 1.0, "feedback": 0.75}, max_prompt_len=3))
  assert result["problems"] == 3  # The students' short prompts fit.
  assert result["demonstration_problems"] == 0 and result["teacher_demonstration_pass1"] is None
  assert result["feedback_problems"] == 0 and result["warnings"] == []


def test_feedback_baseline_is_not_biased_by_the_samples_that_chose_the_problem():
  """A teacher no better than the student: the feedback difference must be about 0, not positive.

  Counted on all of a problem's samples, chosen for holding a failure, the student's rate was
  (p - p^4) / (1 - p^4) = 0.467 at p = 0.5 with 4 samples, a +0.033 edge for an equal teacher.
  """
  rng = np.random.default_rng(0)
  problems = [Problem(task_id=f"t{i}", question=f"q{i}") for i in range(6000)]

  def judge(problems, completions):
    return {
      p.task_id: [(bool(rng.random() < 0.5), "expected 3, got 4") for _ in completions[p.task_id]] for p in problems
    }

  inputs = DiagnosticInputs(
    problems=problems,
    messages=[[{"role": "user", "content": p.question}] for p in problems],
    render=lambda messages: [1],
    sample_texts=lambda prompts: [["x"] * SAMPLES for _ in prompts],
    judge=judge,
    templates=TeacherTemplates(),
    reference_demonstration=lambda p: "",
    max_prompt_len=1000,
  )
  result = teacher_diagnostic(inputs)
  assert 2700 < result["feedback_problems"] < 3300  # The problems whose first sample failed.
  assert abs(result["feedback_minus_student"]["difference"]) < 0.02  # Standard error about 0.007.
