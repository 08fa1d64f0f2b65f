"""Decoder-only transformer (Qwen3 dense, Llama 3), its KV cache, presets and HF import/export."""

from ssd_jax.model import presets
from ssd_jax.model.config import Llama3RopeScaling, ModelConfig
from ssd_jax.model.kv_cache import KVCache
from ssd_jax.model.transformer import Transformer

__all__ = ["KVCache", "Llama3RopeScaling", "ModelConfig", "Transformer", "presets"]
