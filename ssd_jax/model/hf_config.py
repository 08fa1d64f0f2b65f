"""Hugging Face config.json for the model families we import and export: Qwen3, Qwen3-MoE and Llama.

`config_from_hf` turns a config.json dict into a ModelConfig and refuses what this model does not
implement (biases, sliding windows, shared experts, other activations or rope types), so a checkpoint is
rejected before any tensor is read. `config_to_hf` is its inverse for export; `write_configs` writes it
with the generation config whose token ids transformers also reads from config.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from ssd_jax.model.config import Llama3RopeScaling, ModelConfig

_ARCHITECTURES = {"Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe", "LlamaForCausalLM": "llama"}
# Token ids transformers reads from config.json as well as from generation_config.json.
GENERATION_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def config_from_hf(hf_config: Mapping[str, Any], **overrides) -> ModelConfig:
  """ModelConfig from a Hugging Face config.json dict; `overrides` set e.g. dtype, remat.

  Raises:
    ValueError: unsupported architecture or features this model does not implement.
  """
  archs = hf_config.get("architectures") or []
  family = next((_ARCHITECTURES[a] for a in archs if a in _ARCHITECTURES), None)
  if family is None and not archs:
    family = {"qwen3": "qwen3", "qwen3_moe": "qwen3_moe", "llama": "llama"}.get(hf_config.get("model_type"))
  if family is None:
    raise ValueError(
      f"Unsupported Hugging Face architecture {archs or hf_config.get('model_type')!r}; "
      f"supported: {sorted(_ARCHITECTURES)}"
    )
  for flag in ("attention_bias", "mlp_bias", "use_sliding_window"):
    if hf_config.get(flag):
      raise ValueError(f"Hugging Face config sets {flag}=True, which this model does not implement")
  if hf_config.get("hidden_act", "silu") != "silu":
    raise ValueError(f"Hugging Face config hidden_act={hf_config['hidden_act']!r}; only 'silu' is supported")
  heads = hf_config["num_attention_heads"]
  rope = dict(hf_config.get("rope_parameters") or {})
  rope.update(hf_config.get("rope_scaling") or {})
  rope_theta = rope.get("rope_theta", hf_config.get("rope_theta", 10_000.0))
  if "rope_theta" in hf_config and float(hf_config["rope_theta"]) != float(rope_theta):
    raise ValueError(
      f"Hugging Face config gives rope_theta={hf_config['rope_theta']} and rope_parameters.rope_theta={rope_theta}; "
      "readers disagree on which one counts, so make them equal"
    )
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type == "llama3":
    scaling = Llama3RopeScaling(
      factor=float(rope["factor"]),
      low_freq_factor=float(rope["low_freq_factor"]),
      high_freq_factor=float(rope["high_freq_factor"]),
      original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
    )
  elif rope_type == "default":
    scaling = None
  else:
    raise ValueError(f"Unsupported rope_type {rope_type!r}; supported: 'default', 'llama3'")
  fields = dict(
    vocab_size=hf_config["vocab_size"],
    hidden_size=hf_config["hidden_size"],
    intermediate_size=hf_config["intermediate_size"],
    num_layers=hf_config["num_hidden_layers"],
    num_heads=heads,
    num_kv_heads=hf_config.get("num_key_value_heads") or heads,
    head_dim=hf_config.get("head_dim") or hf_config["hidden_size"] // heads,
    rope_theta=float(rope_theta),
    rope_scaling=scaling,
    rms_norm_eps=float(hf_config.get("rms_norm_eps", 1e-6)),  # transformers' default for these families
    tie_embeddings=bool(hf_config.get("tie_word_embeddings", False)),
    qk_norm=family in ("qwen3", "qwen3_moe"),
    max_position_embeddings=hf_config.get("max_position_embeddings", 40_960),
  )
  if family == "qwen3_moe":
    fields.update(_moe_fields_from_hf(hf_config))
  fields.update(overrides)
  return ModelConfig(**fields)


# transformers' Qwen3MoeConfig default for router_aux_loss_coef.
HF_ROUTER_AUX_LOSS_COEF = 0.001


def _moe_fields_from_hf(hf_config: Mapping[str, Any]) -> dict[str, Any]:
  # transformers 5 writes num_experts as num_local_experts.
  experts = hf_config.get("num_experts", hf_config.get("num_local_experts"))
  if not experts:
    raise ValueError("Hugging Face config of a mixture of experts gives neither num_experts nor num_local_experts")
  if hf_config.get("shared_expert_intermediate_size"):
    raise ValueError("Hugging Face config has shared experts, which this model does not implement")
  return dict(
    num_experts=int(experts),
    num_experts_per_tok=int(hf_config["num_experts_per_tok"]),
    moe_intermediate_size=int(hf_config["moe_intermediate_size"]),
    norm_topk_prob=bool(hf_config.get("norm_topk_prob", False)),
    decoder_sparse_step=int(hf_config.get("decoder_sparse_step", 1)),
    mlp_only_layers=tuple(hf_config.get("mlp_only_layers") or ()),
    # transformers adds the load-balancing loss to the training loss only with output_router_logits.
    router_aux_loss_coef=float(hf_config.get("router_aux_loss_coef", HF_ROUTER_AUX_LOSS_COEF))
    if hf_config.get("output_router_logits")
    else 0.0,
  )


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
  """The config.json dict transformers needs to rebuild `cfg`.

  Raises:
    ValueError: a mixture of experts without q/k norms (Qwen3-MoE, the one MoE family written, has them).
  """
  if cfg.num_experts and not cfg.qk_norm:
    raise ValueError("a mixture of experts without q/k norms has no Hugging Face family to export to")
  if cfg.num_experts:
    arch, model_type = "Qwen3MoeForCausalLM", "qwen3_moe"
  else:
    arch, model_type = ("Qwen3ForCausalLM", "qwen3") if cfg.qk_norm else ("LlamaForCausalLM", "llama")
  rope_parameters = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_scaling is not None:
    rope_parameters.update(rope_type="llama3", **dataclasses.asdict(cfg.rope_scaling))
  moe = {}
  if cfg.num_experts:
    moe = {
      "num_experts": cfg.num_experts,
      "num_experts_per_tok": cfg.num_experts_per_tok,
      "moe_intermediate_size": cfg.moe_intermediate_size,
      "norm_topk_prob": cfg.norm_topk_prob,
      "decoder_sparse_step": cfg.decoder_sparse_step,
      "mlp_only_layers": list(cfg.mlp_only_layers),
      # A model trained without the router loss keeps transformers' default weight (the released Qwen3-MoE
      # checkpoints' too), switched off, for whoever turns output_router_logits on.
      "router_aux_loss_coef": cfg.router_aux_loss_coef or HF_ROUTER_AUX_LOSS_COEF,
      "output_router_logits": cfg.router_aux_loss_coef > 0,
    }
  return {
    "architectures": [arch],
    "model_type": model_type,
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.hidden_size,
    "intermediate_size": cfg.intermediate_size,
    "num_hidden_layers": cfg.num_layers,
    "num_attention_heads": cfg.num_heads,
    "num_key_value_heads": cfg.num_kv_heads,
    "head_dim": cfg.head_dim,
    "hidden_act": "silu",
    "max_position_embeddings": cfg.max_position_embeddings,
    "rms_norm_eps": cfg.rms_norm_eps,
    "rope_theta": cfg.rope_theta,
    "rope_parameters": rope_parameters,
    "tie_word_embeddings": cfg.tie_embeddings,
    "attention_bias": False,
    "mlp_bias": False,
    "torch_dtype": cfg.param_dtype,
    "dtype": cfg.param_dtype,
    **moe,
  }


def write_configs(directory: str, hf_config: Mapping[str, Any], generation: Mapping[str, Any] | None) -> None:
  """Writes config.json and, when `generation` is given, generation_config.json plus its token ids in config.json."""
  hf_config = dict(hf_config)
  if generation is not None:
    hf_config.update({k: generation[k] for k in GENERATION_TOKEN_IDS if generation.get(k) is not None})
    with open(os.path.join(directory, "generation_config.json"), "w") as f:
      json.dump(dict(generation), f, indent=2)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2)
