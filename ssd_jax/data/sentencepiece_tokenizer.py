"""A SentencePiece `.model` file as a `Tokenizer`, matching declared special tokens in text as transformers does."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sentencepiece
from sentencepiece import sentencepiece_model_pb2

from ssd_jax.data.tokenizer_base import Tokenizer


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece `.model` file.

  `encode` matches the special and added tokens in the text, since SentencePiece does not match control pieces
  such as `<s>`, and encodes the text between them with SentencePiece. Only the start of the text gets the dummy
  prefix (`▁`), as SentencePiece does around the user-defined pieces it matches itself and as `transformers`'
  `LlamaTokenizer` (`legacy=False`) does.
  """

  def __init__(
    self,
    processor: sentencepiece.SentencePieceProcessor,
    *,
    added_tokens: Mapping[str, int | None] | None = None,
    **kwargs: Any,
  ):
    """Wraps `processor`.

    Args:
      processor: the loaded SentencePiece model.
      added_tokens: text -> declared id (or None) of the tokens matched in text besides the special tokens.
      **kwargs: the `Tokenizer` arguments.

    Raises:
      ValueError: a special or added token is not a piece of the model, or not the piece of its declared id.
    """
    super().__init__(**kwargs)
    self.processor = processor
    self._continuation_processor = _without_dummy_prefix(processor)
    self._token_ids = _piece_ids(processor, {**dict.fromkeys(self.special_tokens.values()), **(added_tokens or {})})
    # Longest first, so a token wins over another that is a prefix of it.
    tokens = sorted(self._token_ids, key=len, reverse=True)
    self._token_pattern = re.compile("(" + "|".join(map(re.escape, tokens)) + ")") if tokens else None

  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    ids = self._encode(text, self.processor)
    if add_special_tokens and self.processor.bos_id() >= 0:
      ids = [self.processor.bos_id()] + ids
    return ids

  def encode_continuation(self, text: str) -> list[int]:
    return self._encode(text, self._continuation_processor)

  def _encode(self, text: str, first: sentencepiece.SentencePieceProcessor) -> list[int]:
    """Ids of `text`, its first plain part through `first`, later parts (after a matched token) without prefix."""
    # With a capture group, `split` puts the matched tokens at the odd indices.
    parts = self._token_pattern.split(text) if self._token_pattern is not None else [text]
    ids = []
    for i, part in enumerate(parts):
      if i % 2:
        ids.append(self._token_ids[part])
      elif part:
        ids.extend((first if i == 0 else self._continuation_processor).encode(part))
    return ids

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    ids = [int(i) for i in ids]
    if skip_special_tokens:
      return self.processor.decode([i for i in ids if not self.processor.is_control(i)])
    # SentencePiece silently drops control ids; keep them as their piece text, like `tokenizers` does.
    text, run = [], []
    for i in ids:
      if self.processor.is_control(i):
        text.append(self.processor.decode(run))
        text.append(self.processor.id_to_piece(i))
        run = []
      else:
        run.append(i)
    text.append(self.processor.decode(run))
    return "".join(text)

  @property
  def vocab_size(self) -> int:
    return self.processor.get_piece_size()

  def token_to_id(self, token: str) -> int | None:
    token_id = self.processor.piece_to_id(token)
    # Unknown pieces map to the unk id; only report an id when the piece really is that token.
    return token_id if self.processor.id_to_piece(token_id) == token else None


def _piece_ids(processor: sentencepiece.SentencePieceProcessor, declared: Mapping[str, int | None]) -> dict[str, int]:
  """Ids of the `declared` tokens (text -> declared id or None), each of which must be a piece of the model.

  Raises:
    ValueError: a token is not a piece of the model, or is declared with another id than its piece's;
      `transformers` would add it as a new token, which a SentencePiece model cannot hold.
  """
  ids = {}
  for text, declared_id in declared.items():
    piece_id = processor.piece_to_id(text)
    if processor.id_to_piece(piece_id) != text:
      raise ValueError(
        f"the tokenizer files declare the special token {text!r}, which is not a piece of the SentencePiece "
        f"model; tokens added beyond a .model file are not supported, ship a tokenizer.json instead"
      )
    if declared_id is not None and declared_id != piece_id:
      raise ValueError(
        f"tokenizer_config.json's added_tokens_decoder gives {text!r} the id {declared_id}, but it is "
        f"piece {piece_id} of the SentencePiece model"
      )
    ids[text] = piece_id
  return ids


def _without_dummy_prefix(processor: sentencepiece.SentencePieceProcessor) -> sentencepiece.SentencePieceProcessor:
  """`processor`'s model with the `▁` SentencePiece prepends to the text switched off, for text after a token."""
  model = sentencepiece_model_pb2.ModelProto.FromString(processor.serialized_model_proto())
  if not model.normalizer_spec.add_dummy_prefix:
    return processor
  model.normalizer_spec.add_dummy_prefix = False
  return sentencepiece.SentencePieceProcessor(model_proto=model.SerializeToString())


def sentencepiece_special_tokens(processor: sentencepiece.SentencePieceProcessor) -> dict[str, str]:
  ids = {
    "bos_token": processor.bos_id(),
    "eos_token": processor.eos_id(),
    "pad_token": processor.pad_id(),
    "unk_token": processor.unk_id(),
  }
  return {name: processor.id_to_piece(i) for name, i in ids.items() if i >= 0}
