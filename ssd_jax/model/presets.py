"""Named model shapes: published Qwen3 dense and MoE and Llama 3.x sizes, plus tiny ones for tests."""

from __future__ import annotations

from ssd_jax.model.config import Llama3RopeScaling, ModelConfig

QWEN3_VOCAB = 151_936
LLAMA3_VOCAB = 128_256

_LLAMA31_SCALING = Llama3RopeScaling(
  factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
)
_LLAMA32_SCALING = Llama3RopeScaling(
  factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
)


def _qwen3(hidden, intermediate, layers, heads, kv_heads, tie) -> ModelConfig:
  return ModelConfig(
    vocab_size=QWEN3_VOCAB,
    hidden_size=hidden,
    intermediate_size=intermediate,
    num_layers=layers,
    num_heads=heads,
    num_kv_heads=kv_heads,
    head_dim=128,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_embeddings=tie,
    qk_norm=True,
    max_position_embeddings=40_960,
  )


def _qwen3_moe(hidden, layers, heads, kv_heads, experts, top_k, expert_width) -> ModelConfig:
  return _qwen3(hidden, 6144, layers, heads, kv_heads, tie=False).replace(
    num_experts=experts,
    num_experts_per_tok=top_k,
    moe_intermediate_size=expert_width,
    norm_topk_prob=True,
    router_aux_loss_coef=0.001,
  )


def _llama3(hidden, intermediate, layers, heads, kv_heads, head_dim, tie, scaling) -> ModelConfig:
  return ModelConfig(
    vocab_size=LLAMA3_VOCAB,
    hidden_size=hidden,
    intermediate_size=intermediate,
    num_layers=layers,
    num_heads=heads,
    num_kv_heads=kv_heads,
    head_dim=head_dim,
    rope_theta=500_000.0,
    rope_scaling=scaling,
    rms_norm_eps=1e-5,
    tie_embeddings=tie,
    qk_norm=False,
    max_position_embeddings=131_072,
  )


PRESETS: dict[str, ModelConfig] = {
  "qwen3_0p6b": _qwen3(1024, 3072, 28, 16, 8, tie=True),
  "qwen3_1p7b": _qwen3(2048, 6144, 28, 16, 8, tie=True),
  "qwen3_4b": _qwen3(2560, 9728, 36, 32, 8, tie=True),
  "qwen3_8b": _qwen3(4096, 12288, 36, 32, 8, tie=False),
  # Qwen3-30B-A3B: 128 experts, 8 per token; every layer MoE. The 2507 checkpoints' config.json
  # raise rope_theta and the context length; loading one takes its own values.
  "qwen3_30b_a3b": _qwen3_moe(2048, 48, 32, 4, experts=128, top_k=8, expert_width=768),
  "llama3p2_1b": _llama3(2048, 8192, 16, 32, 8, 64, tie=True, scaling=_LLAMA32_SCALING),
  "llama3p1_8b": _llama3(4096, 14336, 32, 32, 8, 128, tie=False, scaling=_LLAMA31_SCALING),
  # Tiny shapes for tests and CPU runs; head_dim deliberately differs from hidden / heads.
  "tiny_qwen3": ModelConfig(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=32,
    rope_theta=10_000.0,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
    qk_norm=True,
    max_position_embeddings=2048,
  ),
  "tiny_qwen3_moe": ModelConfig(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=32,
    rope_theta=10_000.0,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
    qk_norm=True,
    max_position_embeddings=2048,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
    norm_topk_prob=True,
    router_aux_loss_coef=0.001,
  ),
  "tiny_llama3": ModelConfig(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    rope_theta=500_000.0,
    rope_scaling=Llama3RopeScaling(
      factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64
    ),
    rms_norm_eps=1e-5,
    tie_embeddings=False,
    qk_norm=False,
    max_position_embeddings=2048,
  ),
}


def names() -> tuple[str, ...]:
  """All preset names, sorted."""
  return tuple(sorted(PRESETS))


def get(name: str, **overrides) -> ModelConfig:
  """Returns the preset `name`, with optional field overrides (e.g. dtype='float32').

  Raises:
    ValueError: unknown preset name.
  """
  if name not in PRESETS:
    raise ValueError(f"Unknown model preset {name!r}; known presets: {', '.join(names())}")
  cfg = PRESETS[name]
  return cfg.replace(**overrides) if overrides else cfg
