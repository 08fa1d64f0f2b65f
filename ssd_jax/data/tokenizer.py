"""One tokenizer interface over Hugging Face `tokenizer.json` files and SentencePiece models.

`load_tokenizer(path)` accepts
  * a Hugging Face style directory: `tokenizer.json` + `tokenizer_config.json`
    [+ `special_tokens_map.json`, `generation_config.json`, `chat_template.jinja`], read with `tokenizers`;
  * a SentencePiece `.model` file, or a directory holding `tokenizer.model` (plus the optional JSON files
    above, which supply special tokens and the chat template), read with `sentencepiece`.

Like `transformers`, a SentencePiece tokenizer matches the special and added tokens the directory declares
(BOS, EOS, `<unk>`, `added_tokens_decoder`, ...) in the text it encodes, which SentencePiece alone does not do for
control pieces such as `<s>`, and reads `special_tokens_map.json` only when `tokenizer_config.json` has no
`added_tokens_decoder`, letting its entries win.

`stop_ids` are the ids that end a generation: EOS, the chat end-of-turn tokens present in the vocabulary
(`<|im_end|>`, `<|eot_id|>`, ...), and every id in `generation_config.json`'s `eos_token_id`.
"""

from __future__ import annotations

import abc
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import sentencepiece
import tokenizers
from sentencepiece import sentencepiece_model_pb2

from ssd_jax.data import chat_template as chat_template_lib

HF_TOKENIZER_FILE = "tokenizer.json"
SENTENCEPIECE_FILE = "tokenizer.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
GENERATION_CONFIG_FILE = "generation_config.json"

# Template variables holding special tokens, as `transformers` passes them to chat templates.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Config entries listing further special tokens (`transformers` < 5 and >= 5 names).
EXTRA_SPECIAL_TOKENS_KEYS = ("additional_special_tokens", "extra_special_tokens")
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


def _read_json(path: str) -> dict[str, Any]:
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _token_text(value: Any) -> str | None:
  """Special tokens are stored as strings or as serialised AddedTokens (`{"content": ...}`)."""
  if isinstance(value, Mapping):
    return value.get("content")
  return value if isinstance(value, str) else None


def _as_id_list(value: Any) -> list[int]:
  if value is None:
    return []
  return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


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

  def apply_chat_template_ids(
    self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **template_kwargs: Any
  ) -> list[int]:
    """Token ids of the rendered chat; the template writes BOS itself, so nothing is added."""
    return self.encode(self.apply_chat_template(messages, add_generation_prompt, **template_kwargs))


class HFTokenizer(Tokenizer):
  """A `tokenizer.json` file read with the `tokenizers` library."""

  def __init__(self, backend: tokenizers.Tokenizer, **kwargs: Any):
    super().__init__(**kwargs)
    self.backend = backend

  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  @property
  def vocab_size(self) -> int:
    return self.backend.get_vocab_size(with_added_tokens=True)

  def token_to_id(self, token: str) -> int | None:
    return self.backend.token_to_id(token)


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
    # With a capture group, `split` puts the matched tokens at the odd indices.
    parts = self._token_pattern.split(text) if self._token_pattern is not None else [text]
    ids = []
    for i, part in enumerate(parts):
      if i % 2:
        ids.append(self._token_ids[part])
      elif part:
        ids.extend((self.processor if i == 0 else self._continuation_processor).encode(part))
    if add_special_tokens and self.processor.bos_id() >= 0:
      ids = [self.processor.bos_id()] + ids
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


def _special_token_entries(
  tokenizer_config: Mapping[str, Any], special_tokens_map: Mapping[str, Any]
) -> dict[str, Any]:
  """The config entries special tokens are read from, merged the way `transformers` merges them.

  `transformers` reads special_tokens_map.json only when tokenizer_config.json has no `added_tokens_decoder`
  (directories saved before transformers 4.34), and then its entries override the config's.
  """
  if "added_tokens_decoder" in tokenizer_config:
    return dict(tokenizer_config)
  return {**tokenizer_config, **special_tokens_map}


def _special_tokens(entries: Mapping[str, Any]) -> dict[str, str]:
  tokens = {}
  for name in SPECIAL_TOKEN_NAMES:
    text = _token_text(entries.get(name))
    if text is not None:
      tokens[name] = text
  return tokens


def _added_tokens(entries: Mapping[str, Any]) -> dict[str, int | None]:
  """Text -> id of the extra special tokens and `added_tokens_decoder` entries; None where no id is given."""
  tokens: dict[str, int | None] = {}
  for key in EXTRA_SPECIAL_TOKENS_KEYS:
    values = entries.get(key) or ()
    for value in values.values() if isinstance(values, Mapping) else values:
      tokens[_token_text(value)] = None
  for token_id, value in (entries.get("added_tokens_decoder") or {}).items():
    tokens[_token_text(value)] = int(token_id)
  tokens.pop(None, None)
  return tokens


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
        f"model; tokens added beyond a .model file are not supported, ship a {HF_TOKENIZER_FILE} instead"
      )
    if declared_id is not None and declared_id != piece_id:
      raise ValueError(
        f"{TOKENIZER_CONFIG_FILE}'s added_tokens_decoder gives {text!r} the id {declared_id}, but it is "
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


def _sentencepiece_special_tokens(processor: sentencepiece.SentencePieceProcessor) -> dict[str, str]:
  ids = {
    "bos_token": processor.bos_id(),
    "eos_token": processor.eos_id(),
    "pad_token": processor.pad_id(),
    "unk_token": processor.unk_id(),
  }
  return {name: processor.id_to_piece(i) for name, i in ids.items() if i >= 0}


def load_tokenizer(path: str | os.PathLike, chat_template_name: str | None = None) -> Tokenizer:
  """Loads a tokenizer from a Hugging Face style directory or a SentencePiece model.

  Args:
    path: a directory with `tokenizer.json` (or `tokenizer.model`), or a SentencePiece `.model` file.
    chat_template_name: which named template to use when the config stores several.

  Returns:
    An `HFTokenizer` or a `SentencePieceTokenizer`.
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    if not path.endswith(".model"):
      raise ValueError(
        f"tokenizer path {path!r} is a file but not a SentencePiece .model; pass the directory "
        f"holding {HF_TOKENIZER_FILE} instead"
      )
    directory, sp_file, hf_file = os.path.dirname(path), path, None
  elif os.path.isdir(path):
    directory = path
    hf_file = os.path.join(path, HF_TOKENIZER_FILE)
    sp_file = os.path.join(path, SENTENCEPIECE_FILE)
    if not os.path.isfile(hf_file):
      hf_file = None
      if not os.path.isfile(sp_file):
        raise FileNotFoundError(
          f"tokenizer directory {path!r} has neither {HF_TOKENIZER_FILE} nor {SENTENCEPIECE_FILE}"
        )
  else:
    raise FileNotFoundError(f"tokenizer path {path!r} does not exist")

  config = _read_json(os.path.join(directory, TOKENIZER_CONFIG_FILE))
  special_map = _read_json(os.path.join(directory, SPECIAL_TOKENS_MAP_FILE))
  generation = _read_json(os.path.join(directory, GENERATION_CONFIG_FILE))
  entries = _special_token_entries(config, special_map)
  common = dict(
    chat_template=chat_template_lib.read_chat_template(directory, config, chat_template_name),
    extra_stop_ids=_as_id_list(generation.get("eos_token_id")),
  )
  if hf_file is not None:
    return HFTokenizer(tokenizers.Tokenizer.from_file(hf_file), special_tokens=_special_tokens(entries), **common)
  processor = sentencepiece.SentencePieceProcessor(model_file=sp_file)
  special_tokens = {**_sentencepiece_special_tokens(processor), **_special_tokens(entries)}
  return SentencePieceTokenizer(processor, special_tokens=special_tokens, added_tokens=_added_tokens(entries), **common)


def generation_config(directory: str | os.PathLike) -> dict[str, Any]:
  """The generation_config.json a checkpoint with the tokenizer of `directory` should ship.

  The directory's own generation_config.json (the checkpoint's sampling defaults) with `eos_token_id` set
  to every stop id, EOS first, and the BOS / padding ids filled in where it has none; padding falls back
  to EOS. With it, transformers' `generate()` stops where this project's sampler stops.
  """
  tokenizer = load_tokenizer(directory)
  config = _read_json(os.path.join(os.fspath(directory), GENERATION_CONFIG_FILE))
  eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
  config["eos_token_id"] = eos + [i for i in tokenizer.stop_ids if i not in eos]
  if tokenizer.bos_id is not None:
    config.setdefault("bos_token_id", tokenizer.bos_id)
  pad = tokenizer.pad_id if tokenizer.pad_id is not None else (eos or [None])[0]
  if pad is not None:
    config.setdefault("pad_token_id", pad)
  return config
