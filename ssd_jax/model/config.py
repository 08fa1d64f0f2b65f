"""Model configuration: one frozen dataclass describing a decoder-only transformer."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ssd_jax.kernels.attention import ATTENTION_IMPLS
from ssd_jax.kernels.grouped_matmul import GROUPED_MATMUL_IMPLS

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
  """Shape and numerics of a Qwen3 (dense or mixture-of-experts) / Llama-3 style decoder.

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
    attention: one of ATTENTION_IMPLS: 'xla' (dense scores; block-wise over a KV cache), 'splash' (Pallas
      kernels, interpreted off TPU: splash for training and prefill, the ragged decode kernel for decode steps
      where it serves the shapes) or 'auto' (splash when compiling for TPU).
    scan_layers: store the blocks' parameters stacked along a leading 'layers' axis and run them
      with one scanned block (faster compiles of deep models, one block's activations live at a time).
      Needs every block to be alike: all dense or all mixture-of-experts.
    num_experts: routed experts per MoE block E; 0 for a dense model (Qwen3-MoE's num_experts).
    num_experts_per_tok: experts each token is routed to (top-k).
    moe_intermediate_size: SwiGLU hidden width of one expert.
    norm_topk_prob: renormalise the top-k router probabilities to sum to 1.
    decoder_sparse_step: layer i is MoE iff (i + 1) % decoder_sparse_step == 0 (and not in mlp_only_layers).
    mlp_only_layers: layer indices that keep the dense MLP of width intermediate_size.
    router_aux_loss_coef: weight of the router load-balancing loss in training losses.
    moe_matmul: grouped matmul of the experts, one of GROUPED_MATMUL_IMPLS: 'ragged_dot' (XLA),
      'megablox' (the Pallas TPU kernel; interpreted off TPU) or 'auto' (megablox when compiling for TPU).
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
  num_experts: int = 0
  num_experts_per_tok: int = 0
  moe_intermediate_size: int = 0
  norm_topk_prob: bool = False
  decoder_sparse_step: int = 1
  mlp_only_layers: tuple[int, ...] = ()
  router_aux_loss_coef: float = 0.0
  moe_matmul: str = "auto"

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
    self._check_moe()

  def _check_moe(self):
    object.__setattr__(self, "mlp_only_layers", tuple(int(i) for i in self.mlp_only_layers))
    if self.moe_matmul not in GROUPED_MATMUL_IMPLS:
      raise ValueError(f"ModelConfig.moe_matmul must be one of {GROUPED_MATMUL_IMPLS}, got {self.moe_matmul!r}")
    if self.num_experts < 0:
      raise ValueError(f"ModelConfig.num_experts must be >= 0 (0 is dense), got {self.num_experts}")
    if self.num_experts == 0:
      return
    if not 0 < self.num_experts_per_tok <= self.num_experts:
      raise ValueError(
        f"ModelConfig.num_experts_per_tok must be in [1, num_experts={self.num_experts}], "
        f"got {self.num_experts_per_tok}"
      )
    if self.moe_intermediate_size <= 0:
      raise ValueError(f"ModelConfig.moe_intermediate_size must be positive, got {self.moe_intermediate_size}")
    if self.decoder_sparse_step <= 0:
      raise ValueError(f"ModelConfig.decoder_sparse_step must be positive, got {self.decoder_sparse_step}")
    bad = [i for i in self.mlp_only_layers if not 0 <= i < self.num_layers]
    if bad:
      raise ValueError(f"ModelConfig.mlp_only_layers has indices outside [0, {self.num_layers}): {bad}")
    if self.router_aux_loss_coef < 0:
      raise ValueError(f"ModelConfig.router_aux_loss_coef must be >= 0, got {self.router_aux_loss_coef}")
    kinds = {self.is_moe_layer(i) for i in range(self.num_layers)}
    if self.scan_layers and len(kinds) > 1:
      raise ValueError(
        "ModelConfig.scan_layers needs every layer alike, but decoder_sparse_step="
        f"{self.decoder_sparse_step} and mlp_only_layers={list(self.mlp_only_layers)} mix dense and MoE layers; "
        "set scan_layers=False"
      )

  def is_moe_layer(self, layer: int) -> bool:
    """Whether block `layer` is a mixture of experts (Hugging Face Qwen3-MoE's rule)."""
    return self.num_experts > 0 and layer not in self.mlp_only_layers and (layer + 1) % self.decoder_sparse_step == 0

  @property
  def num_moe_layers(self) -> int:
    """How many blocks are mixtures of experts."""
    return sum(self.is_moe_layer(i) for i in range(self.num_layers))

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
    return self._count_params(self.num_experts)

  @property
  def num_active_params(self) -> int:
    """Parameters a token passes through: num_params with only num_experts_per_tok experts per MoE block."""
    return self._count_params(self.num_experts_per_tok)

  def _count_params(self, experts: int) -> int:
    d, f, dh = self.hidden_size, self.intermediate_size, self.head_dim
    attn = d * dh * (2 * self.num_heads + 2 * self.num_kv_heads)
    norms = 2 * d + (2 * dh if self.qk_norm else 0)
    moe = self.num_moe_layers
    dense_mlp = (self.num_layers - moe) * 3 * d * f
    expert_mlp = moe * (d * self.num_experts + experts * 3 * d * self.moe_intermediate_size)
    unembed = 0 if self.tie_embeddings else d * self.vocab_size
    return self.vocab_size * d + self.num_layers * (attn + norms) + dense_mlp + expert_mlp + d + unembed

  def replace(self, **changes) -> ModelConfig:
    """Returns a copy with `changes` applied (validated again)."""
    return dataclasses.replace(self, **changes)
