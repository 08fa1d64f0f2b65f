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

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import sentencepiece
import tokenizers

from ssd_jax.data import chat_template as chat_template_lib
from ssd_jax.data.sentencepiece_tokenizer import SentencePieceTokenizer, sentencepiece_special_tokens
from ssd_jax.data.tokenizer_base import Tokenizer

HF_TOKENIZER_FILE = "tokenizer.json"
SENTENCEPIECE_FILE = "tokenizer.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
GENERATION_CONFIG_FILE = "generation_config.json"

# Template variables holding special tokens, as `transformers` passes them to chat templates.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Config entries listing further special tokens (`transformers` < 5 and >= 5 names).
EXTRA_SPECIAL_TOKENS_KEYS = ("additional_special_tokens", "extra_special_tokens")


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
  special_tokens = {**sentencepiece_special_tokens(processor), **_special_tokens(entries)}
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
