"""Generated token ids back to text, the one way every consumer (records, rollouts, evaluation) decodes them."""

from __future__ import annotations

from typing import Protocol

from ssd_jax.sampling.generate import Generation


class Decoder(Protocol):
  def decode(self, ids: list[int]) -> str: ...


def completion_text(tokenizer: Decoder, generation: Generation) -> str:
  """The decoded completion, without the stop token that ended it."""
  ids = generation.token_ids[:-1] if generation.finish_reason == "stop" else generation.token_ids
  return tokenizer.decode([int(t) for t in ids])
