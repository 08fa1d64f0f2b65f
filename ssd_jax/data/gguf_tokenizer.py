"""A GGUF file's tokenizer and chat template, rebuilt as Hugging Face tokenizer files.

llama.cpp stores the tokenizer as metadata: `tokenizer.ggml.model` (the algorithm), `.tokens`, `.merges`,
`.token_type` (1 normal, 3 control, 4 user-defined), the special token ids, `.pre` (which pre-tokenizer the
vocabulary was trained with, by name) and `tokenizer.chat_template`. This module rebuilds the `tokenizers`
pipeline llama.cpp runs for those names and writes `tokenizer.json` and `tokenizer_config.json`.

Supported: byte-level BPE (`gpt2`) with the pre-tokenizers in PRE_TOKENIZERS, split the way llama.cpp splits
them (e.g. `smollm`: every digit on its own, then GPT-2's regex). Others raise a ValueError naming them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types.

# llama.cpp pre-tokenizer names -> whether digits are split one by one before GPT-2's regex.
PRE_TOKENIZERS = {
  "gpt-2": False,
  "mpt": False,
  "olmo": False,
  "jais": False,
  "smollm": True,
  "starcoder": True,
  "refact": True,
  "codeshell": True,
}
_SPECIAL_IDS = {
  "bos_token": "tokenizer.ggml.bos_token_id",
  "eos_token": "tokenizer.ggml.eos_token_id",
  "unk_token": "tokenizer.ggml.unknown_token_id",
  "pad_token": "tokenizer.ggml.padding_token_id",
}


def tokenizer_from_gguf(metadata: Mapping[str, Any]) -> Tokenizer:
  """The `tokenizers` pipeline a GGUF's tokenizer metadata describes.

  Args:
    metadata: every GGUF metadata key as a plain Python value (see `ssd_jax.model.gguf_import.open_gguf`).
  """
  kind = metadata.get("tokenizer.ggml.model")
  if kind != "gpt2":
    raise ValueError(f"GGUF tokenizer model {kind!r} is not supported; supported: ['gpt2'] (byte-level BPE)")
  pre = metadata.get("tokenizer.ggml.pre", "gpt-2")
  if pre not in PRE_TOKENIZERS:
    raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported; supported: {sorted(PRE_TOKENIZERS)}")
  tokens = list(metadata["tokenizer.ggml.tokens"])
  merges = [tuple(merge.split(" ", 1)) for merge in metadata.get("tokenizer.ggml.merges", ())]
  vocab = {token: i for i, token in enumerate(tokens)}
  if len(vocab) != len(tokens):
    raise ValueError("GGUF tokenizer.ggml.tokens has duplicate tokens")
  tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if PRE_TOKENIZERS[pre]:
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
  else:
    tokenizer.pre_tokenizer = byte_level
  tokenizer.decoder = decoders.ByteLevel()
  tokenizer.post_processor = _post_processor(metadata, tokens)

  # Control tokens (<|im_end|>, ...) are matched whole and dropped by skip_special_tokens; user-defined
  # ones (<think>, ...) are matched whole but kept, as llama.cpp does.
  types = list(metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens))
  tokenizer.add_special_tokens(
    [AddedToken(t, special=True, normalized=False) for t, kind in zip(tokens, types) if kind == CONTROL]
  )
  tokenizer.add_tokens(
    [AddedToken(t, special=False, normalized=False) for t, kind in zip(tokens, types) if kind == USER_DEFINED]
  )
  return tokenizer


def _post_processor(metadata: Mapping[str, Any], tokens: list[str]):
  """BOS/EOS framing for `add_special_tokens=True`, per the file's add_bos_token / add_eos_token."""
  framing = [
    (name, metadata.get(f"tokenizer.ggml.{name}_token_id"))
    for name in ("bos", "eos")
    if metadata.get(f"tokenizer.ggml.add_{name}_token")
  ]
  if not framing:
    return processors.ByteLevel(trim_offsets=False)
  for name, token_id in framing:
    if token_id is None:
      raise ValueError(f"GGUF sets tokenizer.ggml.add_{name}_token but has no {name} token id")
  bos = [tokens[i] for name, i in framing if name == "bos"]
  eos = [tokens[i] for name, i in framing if name == "eos"]
  return processors.TemplateProcessing(
    single=" ".join([*bos, "$A", *eos]),
    pair=" ".join([*bos, "$A", *eos, *bos, "$B", *eos]),
    special_tokens=[(tokens[i], i) for _, i in framing],
  )


def tokenizer_config_from_gguf(metadata: Mapping[str, Any]) -> dict[str, Any]:
  """The tokenizer_config.json of a GGUF: special tokens, BOS/EOS flags, context length, chat template."""
  tokens = metadata["tokenizer.ggml.tokens"]
  config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
  for name, key in _SPECIAL_IDS.items():
    token_id = metadata.get(key)
    if token_id is not None:
      if not 0 <= token_id < len(tokens):
        raise ValueError(f"GGUF {key}={token_id} is outside the vocabulary of {len(tokens)} tokens")
      config[name] = tokens[token_id]
  config["add_bos_token"] = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
  config["add_eos_token"] = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
  arch = metadata.get("general.architecture")
  if f"{arch}.context_length" in metadata:
    config["model_max_length"] = int(metadata[f"{arch}.context_length"])
  if metadata.get("tokenizer.chat_template"):
    config["chat_template"] = metadata["tokenizer.chat_template"]
  return config


def write_gguf_tokenizer(metadata: Mapping[str, Any], directory: str) -> list[str]:
  """Writes tokenizer.json and tokenizer_config.json of a GGUF into `directory`; returns their names."""
  os.makedirs(directory, exist_ok=True)
  tokenizer_from_gguf(metadata).save(os.path.join(directory, "tokenizer.json"))
  with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
    json.dump(tokenizer_config_from_gguf(metadata), f, indent=2, ensure_ascii=False)
  return ["tokenizer.json", "tokenizer_config.json"]
