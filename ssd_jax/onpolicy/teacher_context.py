"""Teacher contexts: the student's prompt plus what the teacher knows, followed by the student's response.

The teacher is the same model shown extra context in the user turn: a correct demonstration (a
successful sibling rollout, or the problem's reference solution) and/or the sandbox's feedback on the
student's attempt. Its input is `chat(prompt + context, add_generation_prompt)` followed by EXACTLY the
student's response token ids, so the teacher's prediction at each response position is conditioned on
the same prefix of the response as the student's (see `ssd_jax.train.distill_batch` for the arrays).
"""

from __future__ import annotations

import dataclasses
import random
import re
import string
from collections.abc import Callable, Mapping, Sequence

from ssd_jax.data.prompt_set import ChatTokenizer, chat_prompt_ids
from ssd_jax.evals.feedback import clip_text, escape_control_text

CONTEXT_KINDS = ("demonstration", "feedback", "feedback_or_demonstration", "demonstration_else_feedback")
_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)

Messages = list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class TeacherTemplates:
  """How extra context is written into the user turn; `{prompt}` is the original user message.

  Attributes:
    demonstration: text with `{prompt}` and `{demonstration}` (a correct answer).
    feedback: text with `{prompt}` and `{feedback}` (what went wrong with the student's attempt).
    both: text with `{prompt}`, `{demonstration}` and `{feedback}`.
    max_feedback_chars: feedback longer than this is cut (head and tail kept) before rendering.
    max_demonstration_chars: demonstrations longer than this are not used.
    strip_thinking: remove `<think>...</think>` blocks (and an unclosed one) from sibling demonstrations, so the
      teacher sees the answer, not the sibling's reasoning (SDPO's setting for thinking models).
  """

  demonstration: str = "{prompt}\n\nHere is a correct solution:\n{demonstration}\n\nNow solve the problem."
  feedback: str = "{prompt}\n\nYour previous attempt failed:\n{feedback}\n\nNow solve the problem correctly."
  both: str = (
    "{prompt}\n\nYour previous attempt failed:\n{feedback}\n\n"
    "Here is a correct solution:\n{demonstration}\n\nNow solve the problem."
  )
  max_feedback_chars: int = 1000
  max_demonstration_chars: int = 4000
  strip_thinking: bool = False

  def __post_init__(self):
    for name, fields in (
      ("demonstration", {"prompt", "demonstration"}),
      ("feedback", {"prompt", "feedback"}),
      ("both", {"prompt", "demonstration", "feedback"}),
    ):
      _check_template(name, getattr(self, name), fields)
    for name in ("max_feedback_chars", "max_demonstration_chars"):
      if getattr(self, name) < 1:
        raise ValueError(f"TeacherTemplates.{name} must be >= 1, got {getattr(self, name)}")


def _check_template(name: str, template: str, fields: set[str]) -> None:
  """Raises ValueError unless `template`'s replacement fields are exactly `{field}` for each of `fields`.

  A field with an index, attribute, conversion or format spec (`{prompt[0]}`, `{prompt!r}`) would fail or
  change the text when rendered, and `{{prompt}}` is a literal brace, not a field.
  """
  try:
    parsed = list(string.Formatter().parse(template))
  except ValueError as e:  # An unmatched brace.
    raise ValueError(f"TeacherTemplates.{name} is not a format string: {e}") from e
  plain, odd = set(), []
  for _, field, spec, conversion in parsed:
    if field is None:
      continue
    if field in fields and not spec and not conversion:
      plain.add(field)
    else:
      odd.append("{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
  missing = sorted(fields - plain)
  if odd or missing:
    raise ValueError(
      f"TeacherTemplates.{name} must hold exactly the fields {sorted(fields)}, each as a plain {{name}}: "
      f"missing {missing}, unexpected {odd}"
    )


@dataclasses.dataclass(frozen=True)
class Attempt:
  """One student rollout as the sandbox judged it.

  Attributes:
    response_text: the decoded response (what a sibling shows as a demonstration).
    passed: whether every grading test passed.
    feedback: execution feedback text (failing tests, expected vs actual, traceback).
  """

  response_text: str
  passed: bool
  feedback: str


@dataclasses.dataclass(frozen=True)
class ContextChoice:
  """What the teacher is shown for one rollout (both None: the rollout gets no teacher)."""

  demonstration: str | None = None
  feedback: str | None = None

  @property
  def has_context(self) -> bool:
    return self.demonstration is not None or self.feedback is not None


def feedback_context(feedback: str, templates: TeacherTemplates) -> str:
  """The feedback text a teacher is shown for a failed attempt: within the cap, never empty.

  Feedback made for the teacher (`format_feedback` with `templates.max_feedback_chars`) already fits, whole
  failures only; the head-and-tail clip is for other text.
  """
  return clip_text(feedback, templates.max_feedback_chars) or "The attempt failed."


def choose_contexts(
  attempts: Sequence[Attempt],
  *,
  kind: str,
  templates: TeacherTemplates,
  reference_solution: str = "",
  rng: random.Random | None = None,
  fits: Callable[[ContextChoice], bool] | None = None,
) -> list[ContextChoice]:
  """Picks the teacher context of each rollout in one group (the G rollouts of one prompt).

  * 'demonstration': a successful sibling (never the rollout itself), else the reference solution
    when one is given, else nothing.
  * 'feedback': the rollout's own feedback when it failed; passing rollouts get nothing.
  * 'feedback_or_demonstration': a successful sibling (or the reference), and the feedback when the
    rollout failed; nothing when neither exists.
  * 'demonstration_else_feedback': a successful sibling (or the reference) alone; the feedback only when the
    rollout failed and there is no demonstration (SDPO's code-generation setting).

  Args:
    attempts: the group's rollouts, in order.
    kind: one of CONTEXT_KINDS.
    templates: caps on feedback and demonstration length.
    reference_solution: a known correct answer, already rendered like a response ("" for none).
    rng: picks among several successful siblings; None takes the first.
    fits: `fits(choice)`, whether the teacher prompt with `choice` fits its width; a demonstration
      that does not is passed over for another sibling, then the reference, then none (the feedback alone,
      where the kind gives it). None: every context fits.

  Returns:
    One ContextChoice per attempt.
  """
  if kind not in CONTEXT_KINDS:
    raise ValueError(f"teacher context kind must be one of {CONTEXT_KINDS}, got {kind!r}")
  texts = [_THINK_BLOCK.sub("", a.response_text) if templates.strip_thinking else a.response_text for a in attempts]
  # A response is decoded with its control tokens spelled out; in the teacher's user turn they would be read
  # as control ids again (a sibling that sampled `<|im_start|>` would open a fake turn), as feedback would.
  texts = [escape_control_text(text) for text in texts]
  winners = [
    i for i, a in enumerate(attempts) if a.passed and len(texts[i].strip()) <= templates.max_demonstration_chars
  ]
  reference = escape_control_text(reference_solution.strip()) or None
  choices = []
  for i, attempt in enumerate(attempts):
    demonstrations = []
    if kind != "feedback":
      siblings = [j for j in winners if j != i]
      if rng is not None:
        rng.shuffle(siblings)
      demonstrations = [texts[j].strip() for j in siblings] or [reference]
      if siblings and reference is not None:
        demonstrations.append(reference)  # Only when no sibling fits.
    choice = None
    for demonstration in [d for d in demonstrations if d is not None]:
      candidate = _choice(kind, attempt, demonstration, templates)
      if fits is None or fits(candidate):
        choice = candidate
        break
    choices.append(choice or _choice(kind, attempt, None, templates))
  return choices


def _choice(kind: str, attempt: Attempt, demonstration: str | None, templates: TeacherTemplates) -> ContextChoice:
  """The context of `attempt` with `demonstration` (None: none), and its feedback where `kind` gives it."""
  wants_feedback = kind in ("feedback", "feedback_or_demonstration") or (
    kind == "demonstration_else_feedback" and demonstration is None
  )
  feedback = feedback_context(attempt.feedback, templates) if wants_feedback and not attempt.passed else None
  return ContextChoice(demonstration=demonstration, feedback=feedback)


def teacher_messages(
  prompt_messages: Sequence[Mapping[str, str]], choice: ContextChoice, templates: TeacherTemplates
) -> Messages:
  """The prompt's messages with the context written into the last user turn."""
  messages = [dict(m) for m in prompt_messages]
  users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
  if not users:
    raise ValueError("prompt_messages has no user turn to add the teacher context to")
  if not choice.has_context:
    return messages
  last = users[-1]
  prompt = messages[last]["content"]
  if choice.demonstration is not None and choice.feedback is not None:
    content = templates.both.format(prompt=prompt, demonstration=choice.demonstration, feedback=choice.feedback)
  elif choice.demonstration is not None:
    content = templates.demonstration.format(prompt=prompt, demonstration=choice.demonstration)
  else:
    content = templates.feedback.format(prompt=prompt, feedback=choice.feedback)
  messages[last]["content"] = content
  return messages


@dataclasses.dataclass(frozen=True)
class TeacherInput:
  """One rollout's teacher input; `ids` = `prompt_ids` + the student's response ids, unchanged.

  Attributes:
    prompt_ids: the teacher's prompt (chat with context, assistant turn opened).
    ids: the whole teacher sequence.
    response_start: index in `ids` of the first response token.
    has_context: whether any context was added (False: the teacher prompt is the student's).
  """

  prompt_ids: tuple[int, ...]
  ids: tuple[int, ...]
  response_start: int
  has_context: bool


def build_teacher_input(
  tokenizer: ChatTokenizer,
  prompt_messages: Sequence[Mapping[str, str]],
  choice: ContextChoice,
  response_ids: Sequence[int],
  templates: TeacherTemplates,
) -> TeacherInput:
  """Renders the teacher's prompt and appends the student's response ids verbatim.

  The response is never re-tokenised: the teacher scores exactly the tokens the student sampled.
  """
  ids = chat_prompt_ids(tokenizer, teacher_messages(prompt_messages, choice, templates))
  return TeacherInput(
    prompt_ids=tuple(ids),
    ids=tuple(ids) + tuple(int(t) for t in response_ids),
    response_start=len(ids),
    has_context=choice.has_context,
  )
