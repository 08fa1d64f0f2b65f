"""Supervised fine-tuning examples: chat-formatted token ids with a response-only loss mask.

An example is

  tokens = prompt_ids + encode_continuation(completion) + end_of_turn
  loss_mask = 0 on the prompt part, 1 on the completion and end-of-turn tokens.

The completion is encoded as a continuation of the prompt, as in the whole rendered conversation (a
SentencePiece response encoded on its own would begin with a dummy "▁" the model never emits there).

For a sample record, `prompt_ids` are the ids stored in the record, the ones the sampler
conditioned on; they are not rendered again, since a template can render differently at
SFT time (templates that print today's date, for one). Its response is likewise the ids the
sampler drew. For chat messages or prompt text, the prompt is
`encode(template(prompt, add_generation_prompt=True))`.

The prompt and the response are tokenised separately and concatenated, rather than
tokenising the conversation rendered with the assistant message. Two reasons:

  * the prompt tokens are then exactly the ones the sampler conditioned on. Rendering the
    assistant turn may differ from the generation prompt (Qwen3 templates, for one,
    insert an empty think block into a rendered final assistant turn), and a BPE merge
    across the prompt/response boundary would shift the boundary; either would train
    on a context the model never sampled from;
  * the boundary between masked and trained tokens is exact by construction.

`end_of_turn_ids` finds the closing tokens of an assistant turn from the template itself
(e.g. `<|im_end|>` for Qwen, `<|eot_id|>` for Llama 3): the rendered text after the
assistant content, up to and including the first stop token. Completions cut off by
`max_new_tokens` get no end-of-turn token, so the model is not taught to stop there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ssd_jax.data.sample_record import SampleRecord

# Placeholder assistant content; the text the template renders after it closes the turn.
_PROBE_CONTENT = "SSDJAXENDOFTURNPROBE"


class ChatTokenizer(Protocol):
  """What building SFT examples needs from a tokenizer."""

  eos_id: int | None
  stop_ids: tuple[int, ...]

  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]: ...

  def encode_continuation(self, text: str) -> list[int]: ...

  def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str: ...


def end_of_turn_ids(tokenizer: ChatTokenizer) -> tuple[int, ...]:
  """Token ids that close an assistant turn in the tokenizer's chat template.

  Returns:
    The ids of the text rendered after an assistant message's content, up to and
    including the first stop id; `(eos_id,)` when that text holds no stop id.

  Raises:
    ValueError: the template renders no stop id after the content and there is no EOS.
  """
  messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE_CONTENT}]
  text = tokenizer.apply_chat_template(messages, add_generation_prompt=False)
  if _PROBE_CONTENT not in text:
    raise ValueError("the chat template does not render the assistant message's content")
  end = text.rindex(_PROBE_CONTENT) + len(_PROBE_CONTENT)
  # The suffix as encoded after the content: encoded alone, SentencePiece would start it with its dummy "▁".
  before, whole = tokenizer.encode(text[:end]), tokenizer.encode(text)
  if whole[: len(before)] == before:
    suffix_ids = whole[len(before) :]
  else:  # A token spans the content's end; the suffix alone is the closest reading.
    suffix_ids = tokenizer.encode(text[end:])
  stops = set(tokenizer.stop_ids)
  for i, token in enumerate(suffix_ids):
    if token in stops:
      return tuple(suffix_ids[: i + 1])
  if tokenizer.eos_id is None:
    raise ValueError(
      "cannot tell how an assistant turn ends: the chat template renders no stop "
      "token after the content and the tokenizer has no EOS id"
    )
  return (tokenizer.eos_id,)


def build_sft_example(
  tokenizer: ChatTokenizer,
  prompt_messages: Sequence[Mapping[str, str]] | str,
  completion_text: str,
  max_len: int | None,
  *,
  end_ids: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
  """Tokenises one prompt/completion pair for SFT.

  Args:
    tokenizer: the model's tokenizer with its chat template.
    prompt_messages: the prompt as chat messages (rendered with
      `add_generation_prompt=True`), or an already-rendered prompt string.
    completion_text: the response to train on.
    max_len: the example is cut to its first `max_len` tokens; None keeps it whole.
    end_ids: the tokens appended after the completion; None means
      `end_of_turn_ids(tokenizer)`, and `()` appends nothing (a cut-off completion).

  Returns:
    {'tokens': int32 [n], 'loss_mask': int32 [n]} with n <= max_len; loss_mask is 1
    on the completion and end tokens. It is all zero when the prompt alone reaches
    max_len; callers drop such examples.
  """
  if isinstance(prompt_messages, str):
    prompt_text = prompt_messages
  else:
    prompt_text = tokenizer.apply_chat_template(list(prompt_messages), add_generation_prompt=True)
  if end_ids is None:
    end_ids = end_of_turn_ids(tokenizer)
  return _example(
    tokenizer.encode(prompt_text), tokenizer.encode_continuation(completion_text) + list(end_ids), max_len
  )


def sft_example_from_record(record: SampleRecord, max_len: int | None, end_ids: Sequence[int]) -> dict[str, np.ndarray]:
  """`build_sft_example` for a sample record, on the token ids stored in the record.

  The response is the ids the sampler drew, not the completion text encoded again, which can give other
  tokens: a BPE merges a sampled sequence its own way, and a completion cut inside a character decodes to
  U+FFFD. A sample that ended on a stop token (`finish_reason == 'stop'`) ends with `end_ids` in place of
  that token, as the template closes an assistant turn; a cut-off one gets no end.

  Raises:
    ValueError: the record holds no prompt ids.
  """
  if not record.prompt_ids:
    raise ValueError(
      f"sample record {record.key} has no prompt_ids; SFT trains on the prompt ids the sampler conditioned "
      "on and does not render the prompt again"
    )
  response = list(record.completion_ids)
  if record.finish_reason == "stop":
    response = response[:-1] + list(end_ids)
  return _example(record.prompt_ids, response, max_len)


def _example(prompt_ids: Sequence[int], response_ids: Sequence[int], max_len: int | None) -> dict[str, np.ndarray]:
  """The prompt (masked) then the response (trained), cut to `max_len` tokens."""
  if max_len is not None and max_len < 1:
    raise ValueError(f"max_len must be >= 1 or None, got {max_len}")
  tokens = np.asarray([*prompt_ids, *response_ids], dtype=np.int32)
  loss_mask = np.zeros(len(tokens), dtype=np.int32)
  loss_mask[len(prompt_ids) :] = 1
  return {"tokens": tokens[:max_len], "loss_mask": loss_mask[:max_len]}
