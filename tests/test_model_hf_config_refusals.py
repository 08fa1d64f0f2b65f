"""config.json and GGUF metadata that mean something this model would compute differently are refused."""

import pytest

from ssd_jax.model import gguf_import, presets
from ssd_jax.model.hf_config import config_from_hf, config_to_hf

QWEN3 = {
  "architectures": ["Qwen3ForCausalLM"],
  "vocab_size": 64,
  "hidden_size": 32,
  "intermediate_size": 64,
  "num_hidden_layers": 2,
  "num_attention_heads": 4,
  "num_key_value_heads": 2,
  "head_dim": 8,
}
GGUF = {
  "general.architecture": "llama",
  "llama.attention.head_count": 4,
  "llama.attention.head_count_kv": 2,
  "llama.embedding_length": 32,
  "llama.feed_forward_length": 64,
  "llama.block_count": 2,
  "llama.context_length": 128,
  "llama.attention.layer_norm_rms_epsilon": 1e-5,
  "llama.vocab_size": 64,
}


def test_rope_theta_given_twice_must_agree():
  both = {"rope_theta": 1e6, "rope_parameters": {"rope_type": "default", "rope_theta": 5e6}}
  with pytest.raises(ValueError, match="rope_theta=1000000.0 and rope_parameters.rope_theta=5000000.0"):
    config_from_hf(QWEN3 | both)
  assert config_from_hf(QWEN3 | {"rope_parameters": {"rope_theta": 5e6}}).rope_theta == 5e6
  assert config_from_hf(QWEN3 | {"rope_theta": 5e6, "rope_parameters": {"rope_theta": 5e6}}).rope_theta == 5e6


def test_missing_fields_take_transformers_defaults_or_are_named():
  assert config_from_hf(QWEN3).rms_norm_eps == 1e-6
  moe = QWEN3 | {"architectures": ["Qwen3MoeForCausalLM"], "num_experts_per_tok": 2, "moe_intermediate_size": 16}
  with pytest.raises(ValueError, match="neither num_experts nor num_local_experts"):
    config_from_hf(moe)
  assert config_from_hf(moe | {"num_experts": 4}).num_experts == 4


def test_a_mixture_of_experts_without_qk_norm_is_not_exported_as_qwen3_moe():
  assert config_to_hf(presets.get("tiny_qwen3_moe"))["architectures"] == ["Qwen3MoeForCausalLM"]
  with pytest.raises(ValueError, match="without q/k norms"):
    config_to_hf(presets.get("tiny_qwen3_moe", qk_norm=False))


@pytest.mark.parametrize(
  "scaling",
  [{"llama.rope.scaling.factor": 4.0}, {"llama.rope.scale_linear": 4.0}, {"llama.rope.scaling.type": "linear"}],
)
def test_gguf_rope_scaling_is_refused_however_it_is_written(scaling):
  # llama.cpp reads a factor without a type as linear scaling.
  with pytest.raises(gguf_import.GGUFError, match="RoPE scaling"):
    gguf_import.hf_config_from_gguf(GGUF | scaling, set())


def test_gguf_without_scaling_or_with_factor_one_imports():
  for extra in ({}, {"llama.rope.scaling.factor": 1.0}, {"llama.rope.scaling.type": "none"}):
    assert gguf_import.hf_config_from_gguf(GGUF | extra, set())["num_attention_heads"] == 4
