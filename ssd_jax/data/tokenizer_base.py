"""What every tokenizer offers: text <-> ids, special tokens, stop ids and chat formatting.

`tokenizer.load_tokenizer` builds one from a checkpoint's files (`tokenizer.HFTokenizer` for `tokenizer.json`,
`sentencepiece_tokenizer.SentencePieceTokenizer` for `tokenizer.model`).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from ssd_jax.data import chat_template as chat_template_lib

# Tokens that close a chat turn in common model families; they stop generation when in the vocabulary.
END_OF_TURN_TOKENS = (
  "<|im_end|>",
  "<|eot_id|>",
  "<|eom_id|>",
  "<|endoftext|>",
  "<|end_of_text|>",
  "<end_of_turn>",
  "<|end|>",
)


class Tokenizer(abc.ABC):
  """Text <-> token ids, special tokens, stop ids and chat formatting.

  Subclasses implement the backend calls; special tokens and the chat template come from the
  checkpoint's JSON files and are shared here.
  """

  def __init__(
    self, *, special_tokens: Mapping[str, str], chat_template: str | None, extra_stop_ids: Sequence[int] = ()
  ):
    self.special_tokens = dict(special_tokens)
    self.chat_template = chat_template
    self._extra_stop_ids = tuple(extra_stop_ids)

  @abc.abstractmethod
  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    """Token ids of `text`; `add_special_tokens` adds the backend's BOS/EOS framing."""

  def encode_continuation(self, text: str) -> list[int]:
    """Token ids of `text` as a continuation of earlier text (a response after its prompt, as in the whole
    rendered conversation): backends that mark the start of a text (SentencePiece's dummy "▁") leave it out."""
    return self.encode(text)

  @abc.abstractmethod
  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    """Text of `ids`; `skip_special_tokens` drops control tokens such as BOS/EOS/<|im_end|>."""

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids, added tokens included."""

  @abc.abstractmethod
  def token_to_id(self, token: str) -> int | None:
    """Id of a single token string, or None when it is not in the vocabulary."""

  def _special_id(self, name: str) -> int | None:
    token = self.special_tokens.get(name)
    return None if token is None else self.token_to_id(token)

  @property
  def bos_id(self) -> int | None:
    return self._special_id("bos_token")

  @property
  def eos_id(self) -> int | None:
    return self._special_id("eos_token")

  @property
  def pad_id(self) -> int | None:
    return self._special_id("pad_token")

  @property
  def stop_ids(self) -> tuple[int, ...]:
    """Sorted ids that end a generation (EOS, end-of-turn tokens, generation-config EOS ids)."""
    ids = set(self._extra_stop_ids)
    if self.eos_id is not None:
      ids.add(self.eos_id)
    for token in END_OF_TURN_TOKENS:
      token_id = self.token_to_id(token)
      if token_id is not None:
        ids.add(token_id)
    return tuple(sorted(ids))

  def apply_chat_template(
    self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **template_kwargs: Any
  ) -> str:
    """Renders `messages` with the checkpoint's chat template (see `chat_template.render_chat_template`)."""
    if self.chat_template is None:
      raise chat_template_lib.ChatTemplateError(
        "this tokenizer has no chat template: add `chat_template` to tokenizer_config.json or a "
        f"{chat_template_lib.CHAT_TEMPLATE_FILE} file"
      )
    return chat_template_lib.render_chat_template(
      self.chat_template,
      messages,
      add_generation_prompt=add_generation_prompt,
      special_tokens=self.special_tokens,
      **template_kwargs,
    )

  @functools.cached_property
  def thinking_opener(self) -> str:
    """The `<think>` section the generation prompt leaves open ('' when none): Qwen3 thinking templates end the
    prompt with "<think>\n", so completions hold the reasoning and `</think>` but not the opening tag."""
    if self.chat_template is None:
      return ""
    prompt = self.apply_chat_template([{"role": "user", "content": "?"}], add_generation_prompt=True)
    start = prompt.rfind("<think>")
    return prompt[start:] if start > prompt.rfind("</think>") else ""

  def apply_chat_template_ids(
    self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **template_kwargs: Any
  ) -> list[int]:
    """Token ids of the rendered chat; the template writes BOS itself, so nothing is added."""
    return self.encode(self.apply_chat_template(messages, add_generation_prompt, **template_kwargs))
