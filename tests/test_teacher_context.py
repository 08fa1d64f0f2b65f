"""Teacher contexts: which context each rollout gets, and that the teacher scores the student's exact tokens."""

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.onpolicy.teacher_context import (
  Attempt,
  ContextChoice,
  TeacherTemplates,
  build_teacher_input,
  choose_contexts,
  feedback_context,
  teacher_messages,
)
from ssd_jax.tasks import build_task_tokenizer
from ssd_jax.train.distill_batch import pack_distill_batch, response_block
from tests.train_fixtures import tiny_model_state

TEMPLATES = TeacherTemplates()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  return load_tokenizer(build_task_tokenizer(tmp_path_factory.mktemp("tok")))


def _group():
  return [
    Attempt("wrong A", False, "Test test_0: failed\nassert f(1) == 2"),
    Attempt("right B", True, "All 2 tests passed."),
    Attempt("wrong C", False, "Test test_1: error\nNameError"),
    Attempt("right D", True, "All 2 tests passed."),
  ]


def test_demonstration_is_a_sibling_never_itself():
  choices = choose_contexts(_group(), kind="demonstration", templates=TEMPLATES)
  assert [c.demonstration for c in choices] == ["right B", "right D", "right B", "right B"]
  assert all(c.feedback is None for c in choices)
  for seed in range(20):
    picked = choose_contexts(_group(), kind="demonstration", templates=TEMPLATES, rng=random.Random(seed))
    assert picked[1].demonstration == "right D" and picked[3].demonstration == "right B"


def test_demonstration_falls_back_to_reference_or_nothing():
  lone = [Attempt("x", True, ""), Attempt("y", False, "bad")]
  with_ref = choose_contexts(lone, kind="demonstration", templates=TEMPLATES, reference_solution="REF")
  assert [c.demonstration for c in with_ref] == ["REF", "x"]
  without = choose_contexts(lone, kind="demonstration", templates=TEMPLATES)
  assert [c.has_context for c in without] == [False, True]


def test_a_demonstration_too_long_for_the_teacher_gives_way_to_one_that_fits():
  group = [Attempt("wrong", False, "bad"), Attempt("long " * 50, True, ""), Attempt("short", True, "")]

  def fits(choice):
    return len(choice.demonstration or "") + len(choice.feedback or "") <= 20

  for seed in range(10):  # Whichever sibling the draw puts first, the long one never stands in the way.
    rng = random.Random(seed)
    picked = choose_contexts(group, kind="demonstration", templates=TEMPLATES, rng=rng, fits=fits)
    assert [c.demonstration for c in picked] == ["short", "short", None]
  # No sibling fits: the reference, then none (with the feedback alone, where the kind gives it).
  lone = [Attempt("wrong", False, "bad"), Attempt("long " * 50, True, "")]
  with_ref = choose_contexts(lone, kind="demonstration", templates=TEMPLATES, reference_solution="REF", fits=fits)
  assert [c.demonstration for c in with_ref] == ["REF", "REF"]
  alone = choose_contexts(lone, kind="demonstration_else_feedback", templates=TEMPLATES, fits=fits)
  assert [(c.demonstration, c.feedback) for c in alone] == [(None, "bad"), (None, None)]


def test_feedback_only_for_failures_and_capped():
  long = Attempt("z", False, "E" * 5000)
  templates = TeacherTemplates(max_feedback_chars=100)
  choices = choose_contexts(_group() + [long], kind="feedback", templates=templates)
  assert [c.has_context for c in choices] == [True, False, True, False, True]
  assert choices[0].feedback.startswith("Test test_0") and choices[0].demonstration is None
  assert len(choices[4].feedback) <= 100
  # Every cap holds, down to caps shorter than the cut mark.
  text = "head " + "x" * 60 + " tail"
  for cap in (1, 3, 5, 6, 7, 20):
    clipped = feedback_context(text, TeacherTemplates(max_feedback_chars=cap))
    assert len(clipped) <= cap, (cap, clipped)
  assert feedback_context(text, TeacherTemplates(max_feedback_chars=3)) == "hea"
  assert feedback_context(text, TeacherTemplates(max_feedback_chars=21)) == "head xxx\n...\nxxx tail"


def test_feedback_or_demonstration_combines_both():
  choices = choose_contexts(_group(), kind="feedback_or_demonstration", templates=TEMPLATES)
  assert choices[0].demonstration == "right B" and "assert f(1)" in choices[0].feedback
  assert choices[1].demonstration == "right D" and choices[1].feedback is None
  none = choose_contexts([Attempt("a", True, "")], kind="feedback_or_demonstration", templates=TEMPLATES)
  assert not none[0].has_context


def test_bad_kind_and_template_are_named():
  with pytest.raises(ValueError, match="kind"):
    choose_contexts(_group(), kind="oracle", templates=TEMPLATES)
  with pytest.raises(ValueError, match="TeacherTemplates.feedback"):
    TeacherTemplates(feedback="no placeholders")


def test_teacher_messages_extend_the_last_user_turn():
  prompt = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
  out = teacher_messages(prompt, ContextChoice(demonstration="D", feedback="F"), TEMPLATES)
  assert out[0] == prompt[0] and prompt[1]["content"] == "Q"  # The input is not mutated.
  assert out[1]["content"].startswith("Q\n\n") and "F" in out[1]["content"] and "D" in out[1]["content"]
  assert teacher_messages(prompt, ContextChoice(), TEMPLATES) == prompt


def test_teacher_input_ends_with_the_students_exact_ids(tokenizer):
  prompt = [{"role": "user", "content": "Write f(x) returning x + 1."}]
  # Ids that would NOT survive decode/encode unchanged: the teacher must take them verbatim.
  response = [5, 300, 300, 17, 2]
  choice = ContextChoice(demonstration="```python\ndef f(x):\n    return x + 1\n```")
  teacher = build_teacher_input(tokenizer, prompt, choice, response, TEMPLATES)
  assert list(teacher.ids[teacher.response_start :]) == response
  text = tokenizer.decode(teacher.prompt_ids)
  assert "Here is a correct solution" in text and text.endswith("<|im_start|>assistant\n")
  student = build_teacher_input(tokenizer, prompt, ContextChoice(), response, TEMPLATES)
  assert not student.has_context and len(student.prompt_ids) < len(teacher.prompt_ids)


def test_packed_teacher_logits_align_with_unpadded_forward(tokenizer):
  """Column t of the packed response block equals an unpadded forward's prediction of response token t."""
  graphdef, params = tiny_model_state()
  model = nnx.merge(graphdef, params)
  prompt = [{"role": "user", "content": "Write g(x) returning 2 * x."}]
  responses = [[40, 41, 42, 2], [50, 51]]
  choices = [ContextChoice(feedback="Test test_0: failed"), ContextChoice(demonstration="def g(x): ...")]
  teachers = [build_teacher_input(tokenizer, prompt, c, r, TEMPLATES) for c, r in zip(choices, responses)]
  student = build_teacher_input(tokenizer, prompt, ContextChoice(), [], TEMPLATES).prompt_ids
  width_t = max(len(t.prompt_ids) for t in teachers) + 3
  batch = pack_distill_batch(
    [student] * 2,
    [t.prompt_ids for t in teachers],
    responses,
    prompt_width=len(student) + 5,
    teacher_prompt_width=width_t,
    response_width=6,
  )
  np.testing.assert_array_equal(batch["teacher_tokens"][:, width_t : width_t + 2], [[40, 41], [50, 51]])
  np.testing.assert_array_equal(batch["response_mask"], [[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
  packed = jax.jit(
    lambda b: model.unembed(
      response_block(
        model.hidden(b["teacher_tokens"], b["teacher_positions"], segment_ids=b["teacher_segment_ids"])[0], 6
      )
    )
  )
  packed_logits = np.asarray(packed({k: jnp.asarray(v) for k, v in batch.items()}))
  # Referee layout: each teacher sequence from column 0, right-padded (never attended to by earlier tokens).
  width = max(len(t.ids) for t in teachers)
  ids = np.zeros((len(teachers), width), np.int32)
  for row, teacher in enumerate(teachers):
    ids[row, : len(teacher.ids)] = teacher.ids
  logits = np.asarray(jax.jit(model)(jnp.asarray(ids), jnp.broadcast_to(jnp.arange(width), ids.shape))[0])
  for row, teacher in enumerate(teachers):
    expected = logits[row, teacher.response_start - 1 : len(teacher.ids) - 1]
    n = len(responses[row])
    np.testing.assert_allclose(packed_logits[row, :n], expected, rtol=2e-5, atol=2e-5)


def test_pack_rejects_overlong_prompts():
  with pytest.raises(ValueError, match="teacher prompt"):
    pack_distill_batch([[1]], [[1, 2, 3]], [[4]], prompt_width=2, teacher_prompt_width=2, response_width=2)
