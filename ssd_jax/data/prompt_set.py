"""Problems with their chat prompts: the one way synthesis, on-policy rollouts and evaluation ask for a solution.

A `PromptSet` holds each problem, the chat messages that ask for it (`chat.problem_to_messages`) and their
token ids (the tokenizer's chat template with the assistant turn opened). Every consumer builds its prompts
here, so the same problem yields the same prompt text in every stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ssd_jax.data.chat import problem_to_messages
from ssd_jax.data.problems import Problem

Messages = list[dict[str, str]]


class ChatTokenizer(Protocol):
  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]: ...

  def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str: ...


def chat_prompt_ids(tokenizer: ChatTokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
  """Token ids of `messages` rendered with the chat template, the assistant turn opened."""
  return tokenizer.encode(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))


@dataclasses.dataclass(frozen=True)
class PromptSet:
  """Problems, the messages asking for each, and their prompt token ids, index-aligned.

  Attributes:
    problems: the problems.
    messages: per problem, the chat messages (system turn optional, then the user turn).
    ids: per problem, the prompt token ids.
  """

  problems: tuple[Problem, ...]
  messages: tuple[Messages, ...]
  ids: tuple[tuple[int, ...], ...]

  @classmethod
  def build(
    cls,
    problems: Sequence[Problem],
    tokenizer: ChatTokenizer,
    *,
    system_prompt: str | None,
    include_public_tests: bool = False,
    style: str = "project",
  ) -> PromptSet:
    """Renders every problem's prompt.

    Args:
      problems: the problems.
      tokenizer: a tokenizer with a chat template.
      system_prompt: the system message; None or "" leaves the system turn to the chat template.
      include_public_tests: append the public tests as examples.
      style: the user turn's prompt style (`chat.PROMPT_STYLES`).

    Raises:
      ValueError: a problem the style cannot state (before any prompt is tokenized).
    """
    messages = [problem_to_messages(p, system_prompt or None, include_public_tests, style) for p in problems]
    ids = [tuple(chat_prompt_ids(tokenizer, m)) for m in messages]
    return cls(tuple(problems), tuple(messages), tuple(ids))

  def __len__(self) -> int:
    return len(self.problems)

  def select(self, indices: Sequence[int]) -> PromptSet:
    """The problems at `indices`, in that order."""
    return PromptSet(
      tuple(self.problems[i] for i in indices),
      tuple(self.messages[i] for i in indices),
      tuple(self.ids[i] for i in indices),
    )

  def longest(self) -> int:
    return max(len(ids) for ids in self.ids)

  @property
  def task_ids(self) -> tuple[str, ...]:
    return tuple(p.task_id for p in self.problems)
