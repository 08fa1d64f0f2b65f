"""Generated token ids back to text, the one way every consumer (records, rollouts, evaluation) decodes them."""

from __future__ import annotations

from typing import Protocol

from ssd_jax.sampling.generate import Generation


class Decoder(Protocol):
  def decode(self, ids: list[int]) -> str: ...


class ChatDecoder(Decoder, Protocol):
  thinking_opener: str


def completion_text(tokenizer: Decoder, generation: Generation) -> str:
  """The decoded completion, without the stop token that ended it."""
  ids = generation.token_ids[:-1] if generation.finish_reason == "stop" else generation.token_ids
  return tokenizer.decode([int(t) for t in ids])


def graded_completion_text(tokenizer: ChatDecoder, generation: Generation) -> str:
  """The completion as graders and teachers read it: after the `<think>` the prompt opened, if any, so that
  reasoning is told apart from the answer (a cut-off reasoning section is no answer). Records keep
  `completion_text`, what the model wrote."""
  return tokenizer.thinking_opener + completion_text(tokenizer, generation)
