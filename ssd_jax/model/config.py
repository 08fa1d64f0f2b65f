"""Model configuration: one frozen dataclass describing a decoder-only transformer."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ssd_jax.kernels.attention import ATTENTION_IMPLS

REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


@dataclasses.dataclass(frozen=True)
class Llama3RopeScaling:
  """Llama 3.1 style RoPE frequency scaling (long wavelengths slowed down by `factor`).

  Attributes:
    factor: divisor applied to the lowest frequencies.
    low_freq_factor: wavelengths above original_max_position_embeddings / low_freq_factor are scaled fully.
    high_freq_factor: wavelengths below original_max_position_embeddings / high_freq_factor are kept.
    original_max_position_embeddings: context length the base model was trained with.
  """

  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int

  def __post_init__(self):
    if self.factor < 1.0:
      raise ValueError(f"rope_scaling.factor must be >= 1, got {self.factor}")
    if self.high_freq_factor <= self.low_freq_factor:
      raise ValueError(
        "rope_scaling.high_freq_factor must exceed rope_scaling.low_freq_factor, got "
        f"{self.high_freq_factor} <= {self.low_freq_factor}"
      )


# The integer sizes that define a model's shape (each must be positive).
SHAPE_FIELDS = (
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_layers",
  "num_heads",
  "num_kv_heads",
  "head_dim",
  "max_position_embeddings",
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and numerics of a Qwen3-dense / Llama-3 style decoder.

  Attributes:
    vocab_size: number of token embeddings (and logits).
    hidden_size: residual stream width D.
    intermediate_size: SwiGLU hidden width F.
    num_layers: number of decoder blocks L.
    num_heads: query heads H.
    num_kv_heads: key/value heads (GQA groups); must divide num_heads.
    head_dim: per-head width Dh, independent of hidden_size / num_heads (Qwen3).
    rope_theta: RoPE base.
    rope_scaling: None, or Llama 3.1 frequency scaling.
    rms_norm_eps: epsilon inside every RMSNorm.
    tie_embeddings: whether the unembedding is the transposed token embedding.
    qk_norm: RMSNorm over head_dim on queries and keys before RoPE (Qwen3).
    max_position_embeddings: longest supported position.
    dtype: activation / compute dtype name (e.g. 'bfloat16').
    param_dtype: parameter storage dtype name.
    remat: rematerialisation policy per block, one of REMAT_POLICIES.
    attention: self-attention without a KV cache, one of ATTENTION_IMPLS: 'xla' (dense scores),
      'splash' (the Pallas flash kernel; interpreted off TPU) or 'auto' (splash when compiling for TPU).
      Attention over a KV cache always uses XLA.
    scan_layers: store the blocks' parameters stacked along a leading 'layers' axis and run them
      with one scanned block (faster compiles of deep models, one block's activations live at a time).
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 1_000_000.0
  rope_scaling: Llama3RopeScaling | None = None
  rms_norm_eps: float = 1e-6
  tie_embeddings: bool = False
  qk_norm: bool = True
  max_position_embeddings: int = 40_960
  dtype: str = "bfloat16"
  param_dtype: str = "bfloat16"
  remat: str = "none"
  attention: str = "auto"
  scan_layers: bool = False

  def __post_init__(self):
    for name in SHAPE_FIELDS:
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
        f"ModelConfig.num_heads={self.num_heads} must be a multiple of ModelConfig.num_kv_heads={self.num_kv_heads}"
      )
    if self.head_dim % 2:
      raise ValueError(f"ModelConfig.head_dim must be even for RoPE, got {self.head_dim}")
    if self.rope_theta <= 0:
      raise ValueError(f"ModelConfig.rope_theta must be positive, got {self.rope_theta}")
    if self.rms_norm_eps <= 0:
      raise ValueError(f"ModelConfig.rms_norm_eps must be positive, got {self.rms_norm_eps}")
    if isinstance(self.rope_scaling, dict):
      object.__setattr__(self, "rope_scaling", Llama3RopeScaling(**self.rope_scaling))
    for name in ("dtype", "param_dtype"):
      value = getattr(self, name)
      try:
        canonical = jnp.dtype(value).name
      except TypeError as e:
        raise ValueError(f"ModelConfig.{name}={value!r} is not a dtype name") from e
      object.__setattr__(self, name, canonical)
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"ModelConfig.remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
    if self.attention not in ATTENTION_IMPLS:
      raise ValueError(f"ModelConfig.attention must be one of {ATTENTION_IMPLS}, got {self.attention!r}")

  @property
  def compute_dtype(self) -> jnp.dtype:
    """Activation dtype as a jnp dtype."""
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self) -> jnp.dtype:
    """Parameter dtype as a jnp dtype."""
    return jnp.dtype(self.param_dtype)

  @property
  def num_params(self) -> int:
    """Parameter count (embeddings counted once when tied)."""
    d, f, dh = self.hidden_size, self.intermediate_size, self.head_dim
    attn = d * dh * (2 * self.num_heads + 2 * self.num_kv_heads)
    norms = 2 * d + (2 * dh if self.qk_norm else 0)
    block = attn + 3 * d * f + norms
    unembed = 0 if self.tie_embeddings else d * self.vocab_size
    return self.vocab_size * d + self.num_layers * block + d + unembed

  def replace(self, **changes) -> ModelConfig:
    """Returns a copy with `changes` applied (validated again)."""
    return dataclasses.replace(self, **changes)
