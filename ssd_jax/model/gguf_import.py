"""GGUF (llama.cpp's single-file format) to Hugging Face weights and config.json.

A GGUF file stores a model's hyper-parameters as `<architecture>.*` metadata and its tensors in llama.cpp's
names and layouts, often quantized. This module reads the metadata into the config.json dict transformers uses,
dequantizes every tensor with the `gguf` package's own routines (to float32, the precision they decode to) and
renames it to the torch name. llama.cpp stores a Llama query/key projection with each head's rows interleaved
in (first half, second half) pairs, for its pairwise RoPE; those rows are put back in Hugging Face's
half-split order, as transformers' GGUF loader does.

Supported: architecture 'llama' (dense: no experts, no RoPE scaling) and every tensor type the installed
`gguf` package dequantizes (the float types and the Q*/IQ* quantizations). Anything else is a `GGUFError`
that names it, raised before any tensor is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

SUPPORTED_ARCHITECTURES = ("llama",)

# llama.cpp tensor name (after `blk.N.`) -> Hugging Face name (after `model.layers.N.`).
_LAYER_TENSORS = {
  "attn_norm.weight": "input_layernorm.weight",
  "attn_q.weight": "self_attn.q_proj.weight",
  "attn_k.weight": "self_attn.k_proj.weight",
  "attn_v.weight": "self_attn.v_proj.weight",
  "attn_output.weight": "self_attn.o_proj.weight",
  "ffn_norm.weight": "post_attention_layernorm.weight",
  "ffn_gate.weight": "mlp.gate_proj.weight",
  "ffn_up.weight": "mlp.up_proj.weight",
  "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_TENSORS = {
  "token_embd.weight": "model.embed_tokens.weight",
  "output_norm.weight": "model.norm.weight",
  "output.weight": "lm_head.weight",
}


class GGUFError(ValueError):
  """A GGUF file this importer cannot convert (architecture, tensor type, missing metadata)."""


def _gguf():
  try:
    import gguf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise GGUFError("reading GGUF files needs the `gguf` package: pip install -e '.[real]'") from e
  return gguf


def open_gguf(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
  """Opens a GGUF file (memory-mapped).

  Returns:
    (reader, metadata): the `gguf.GGUFReader` and every metadata key as a plain Python value
    (strings, numbers, bools, lists).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"GGUF file {path!r} does not exist")
  gguf = _gguf()
  try:
    reader = gguf.GGUFReader(path)
  except (ValueError, OSError) as e:
    raise GGUFError(f"{path!r} is not a readable GGUF file: {e}") from e
  return reader, {name: field.contents() for name, field in reader.fields.items()}


def hf_config_from_gguf(metadata: Mapping[str, Any], tensor_names: set[str]) -> dict[str, Any]:
  """The config.json dict of a GGUF's model (no token ids; see `ssd_jax.data.gguf_tokenizer`).

  Args:
    metadata: from `open_gguf`.
    tensor_names: the file's tensor names (an absent `output.weight` means tied embeddings).
  """
  arch = metadata.get("general.architecture")
  if arch not in SUPPORTED_ARCHITECTURES:
    raise GGUFError(f"GGUF architecture {arch!r} is not supported; supported: {list(SUPPORTED_ARCHITECTURES)}")

  def get(key, default=None):
    value = metadata.get(f"{arch}.{key}", default)
    if value is None:
      raise GGUFError(f"GGUF metadata has no {arch}.{key}")
    return value

  if get("expert_count", 0):
    raise GGUFError(f"GGUF model has {get('expert_count')} experts; only dense models are supported")
  # llama.cpp reads a scaling factor without a type as linear scaling, so a factor other than 1 counts too.
  factor = float(get("rope.scaling.factor", 0.0) or get("rope.scale_linear", 0.0) or 0.0)
  rope_scaling = get("rope.scaling.type", "linear" if factor not in (0.0, 1.0) else "none")
  if rope_scaling != "none" or "rope_freqs.weight" in tensor_names:
    raise GGUFError(
      f"GGUF model uses RoPE scaling ({rope_scaling!r}, factor {factor:g}, rope_freqs.weight), which is not supported"
    )
  heads = get("attention.head_count")
  kv_heads = get("attention.head_count_kv", heads)
  if isinstance(heads, list) or isinstance(kv_heads, list):
    raise GGUFError("GGUF model has a per-layer head count; only uniform layers are supported")
  hidden = get("embedding_length")
  vocab = metadata.get(f"{arch}.vocab_size") or len(metadata.get("tokenizer.ggml.tokens") or ()) or None
  if vocab is None:
    raise GGUFError(f"GGUF metadata has neither {arch}.vocab_size nor tokenizer.ggml.tokens")
  return {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": int(vocab),
    "hidden_size": int(hidden),
    "intermediate_size": int(get("feed_forward_length")),
    "num_hidden_layers": int(get("block_count")),
    "num_attention_heads": int(heads),
    "num_key_value_heads": int(kv_heads),
    "head_dim": int(get("rope.dimension_count", hidden // heads)),
    "max_position_embeddings": int(get("context_length")),
    "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
    "rope_theta": float(get("rope.freq_base", 10_000.0)),
    "tie_word_embeddings": "output.weight" not in tensor_names,
    "hidden_act": "silu",
  }


def hf_tensor_name(name: str, num_layers: int) -> str:
  """The Hugging Face name of llama.cpp tensor `name`."""
  if name in _TOP_TENSORS:
    return _TOP_TENSORS[name]
  prefix, _, rest = name.partition(".")
  if prefix == "blk":
    layer, _, rest = rest.partition(".")
    if layer.isdigit() and int(layer) < num_layers and rest in _LAYER_TENSORS:
      return f"model.layers.{layer}.{_LAYER_TENSORS[rest]}"
  raise GGUFError(f"GGUF tensor {name!r} has no counterpart in a Llama model")


def unpermute_rope_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
  """Undoes llama.cpp's row order of a query/key projection.

  Args:
    weight: [num_heads * head_dim, in] in llama.cpp's order, where each head's rows are (pair, 2) interleaved.
    num_heads: heads in this projection (key/value heads for the key projection).

  Returns:
    [num_heads * head_dim, in] with each head's rows as (2, pair): first halves, then second halves.
  """
  rows = weight.shape[0]
  return weight.reshape(num_heads, rows // num_heads // 2, 2, -1).swapaxes(1, 2).reshape(weight.shape)


def _expected_shape(hf_name: str, config: Mapping[str, Any]) -> tuple[int, ...]:
  d, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
  q, kv = config["num_attention_heads"] * config["head_dim"], config["num_key_value_heads"] * config["head_dim"]
  shapes = {
    "q_proj": (q, d),
    "k_proj": (kv, d),
    "v_proj": (kv, d),
    "o_proj": (d, q),
    "gate_proj": (f, d),
    "up_proj": (f, d),
    "down_proj": (d, f),
    "embed_tokens": (v, d),
    "lm_head": (v, d),
  }
  return shapes.get(hf_name.split(".")[-2], (d,))  # Everything else is a norm scale.


def check_tensor_types(reader: Any) -> None:
  """Raises GGUFError naming the first tensor whose type the `gguf` package cannot dequantize."""
  gguf = _gguf()
  tried: dict[Any, bool] = {}
  for tensor in reader.tensors:
    qtype = tensor.tensor_type
    if qtype not in tried:
      block_bytes = gguf.GGML_QUANT_SIZES[qtype][1]
      try:  # One zero block decodes for every type the package implements.
        gguf.dequantize(np.zeros((1, block_bytes), np.uint8), qtype)
        tried[qtype] = True
      except NotImplementedError:
        tried[qtype] = False
    if not tried[qtype]:
      raise GGUFError(
        f"GGUF tensor {tensor.name!r} is stored as {qtype.name}, which the installed gguf package cannot dequantize"
      )


def read_hf_tensors(reader: Any, config: Mapping[str, Any], dtype: str = "float32") -> dict[str, np.ndarray]:
  """Every tensor of a GGUF, dequantized, renamed and laid out as transformers stores it.

  Args:
    reader: from `open_gguf`.
    config: from `hf_config_from_gguf`.
    dtype: numpy dtype of the returned arrays.

  Returns:
    {Hugging Face name: array in torch layout ([out, in] for projections)}.
  """
  gguf = _gguf()
  check_tensor_types(reader)
  heads = {
    "self_attn.q_proj.weight": config["num_attention_heads"],
    "self_attn.k_proj.weight": config["num_key_value_heads"],
  }
  # Names and shapes of every tensor first: a wrong file fails before anything is decoded.
  named = []
  for tensor in reader.tensors:
    name = hf_tensor_name(tensor.name, config["num_hidden_layers"])
    # GGUF lists dimensions innermost first; the decoded array is the row-major (torch) shape.
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    expected = _expected_shape(name, config)
    if shape != expected:
      raise GGUFError(f"GGUF tensor {tensor.name!r} has shape {shape}, expected {expected} from the file's metadata")
    named.append((name, shape, tensor))
  missing = sorted(set(_required_names(config)) - {name for name, _, _ in named})
  if missing:
    raise GGUFError(f"GGUF file lacks {len(missing)} tensors of a Llama model, e.g. {missing[0]!r}")
  tensors = {}
  for name, shape, tensor in named:
    weight = np.asarray(gguf.dequantize(tensor.data, tensor.tensor_type), np.float32).reshape(shape)
    for suffix, num_heads in heads.items():
      if name.endswith(suffix):
        weight = unpermute_rope_rows(weight, num_heads)
    tensors[name] = np.ascontiguousarray(weight.astype(dtype))
  return tensors


def _required_names(config: Mapping[str, Any]) -> list[str]:
  names = ["model.embed_tokens.weight", "model.norm.weight"]
  if not config["tie_word_embeddings"]:
    names.append("lm_head.weight")
  for layer in range(config["num_hidden_layers"]):
    names += [f"model.layers.{layer}.{name}" for name in _LAYER_TENSORS.values()]
  return names
