"""Causal, segment-masked self-attention without [length, length] scores: Pallas splash attention.

Training on 65,536-token packed rows cannot build the [batch, heads, length, length] float32 score array
of plain XLA attention. Splash attention (a block-sparse flash attention for TPU) streams key/value blocks
through VMEM, skips the blocks above the causal diagonal, and masks across packed segments with segment
ids, so memory grows linearly with the length.

Rows are padded to a multiple of the block with segment id 0. Padding only attends padding, and keys of
segment 0 never reach a real token (different segment), so real tokens see exactly the XLA mask; the
outputs at padding positions differ from the XLA path's and carry no meaning in either.

Inside `sharding.use_rules(mesh, rules)` the kernel runs under `jax.shard_map`: each device attends its
own rows (batch axes) and heads (the 'heads' mesh axes), with the whole sequence local. Off TPU the
kernel runs in the Pallas interpreter, which is slow and meant for tests.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask
from jax.sharding import PartitionSpec

from ssd_jax import sharding

ATTENTION_IMPLS = ("auto", "xla", "splash")
# 512 x head_dim tiles of q, k, v and the float32 accumulators fit the default scoped VMEM of v4-v6.
DEFAULT_BLOCK_SIZE = 512
_LANES = 128  # Kernel blocks are multiples of the TPU lane width.
_QKV_AXES = ("batch", "length", "heads", "head_dim")


def target_platform() -> str:
  """Platform the traced program is compiled for: the active mesh's devices, else the default backend.

  Compiling ahead of time for a TPU topology from a CPU host has jax.default_backend() == 'cpu', but
  the mesh built over the topology's devices says 'tpu'.
  """
  active = sharding.active_rules()
  if active is not None:
    return active[0].devices.flat[0].platform
  return jax.default_backend()


def _length_is_sharded() -> bool:
  active = sharding.active_rules()
  return active is not None and sharding.logical_to_spec(_QKV_AXES, active[1])[1] is not None


def resolve_attention_impl(impl: str) -> str:
  """'xla' or 'splash' for a ModelConfig.attention value.

  'auto' picks splash when compiling for TPU and the sequence is not sharded over the mesh (the kernel
  needs every key of a row on the device), XLA otherwise.

  Raises:
    ValueError: an unknown implementation name.
  """
  if impl not in ATTENTION_IMPLS:
    raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLS}, got {impl!r}")
  if impl != "auto":
    return impl
  return "splash" if target_platform() == "tpu" and not _length_is_sharded() else "xla"


def padded_length_and_block(length: int, block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[int, int]:
  """(padded length, block): the block is at most `block_size`, a multiple of 128, and divides the padding.

  Short rows use one block of the row rounded up to 128; long rows are padded to a multiple of
  `block_size`.
  """
  if block_size <= 0 or block_size % _LANES:
    raise ValueError(f"splash block_size must be a positive multiple of {_LANES}, got {block_size}")
  block = min(block_size, -(-length // _LANES) * _LANES)
  return -(-length // block) * block, block


@functools.lru_cache(maxsize=16)
def _splash_kernel(num_heads: int, length: int, block: int, interpret: bool) -> splash.SplashAttentionKernel:
  """A causal splash kernel for `num_heads` local query heads of `length` tokens (built once per shape)."""
  mask = splash_mask.MultiHeadMask([splash_mask.CausalMask((length, length))] * num_heads)
  # Separate dq and dk/dv backward kernels: the fused one keeps a [length / block, heads, length,
  # head_dim] dq partial per row, far too large at long lengths.
  sizes = splash.BlockSizes(
    block_q=block,
    block_kv=block,
    block_kv_compute=block,
    block_q_dkv=block,
    block_kv_dkv=block,
    block_kv_dkv_compute=block,
    block_q_dq=block,
    block_kv_dq=block,
    use_fused_bwd_kernel=False,
  )
  with jax.ensure_compile_time_eval():  # Concrete mask tables, so the cached kernel holds no tracers.
    return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def _local_splash(q, k, v, segment_ids, *, block_size: int, interpret: bool):
  """Splash attention on one device's rows and heads (shapes as in `splash_attention`)."""
  _, length, num_heads, head_dim = q.shape
  padded, block = padded_length_and_block(length, block_size)
  if padded != length:
    pad = ((0, 0), (0, padded - length), (0, 0), (0, 0))
    q, k, v = jnp.pad(q, pad), jnp.pad(k, pad), jnp.pad(v, pad)
    segment_ids = jnp.pad(segment_ids, ((0, 0), (0, padded - length)))
  # The kernel takes [heads, length, head_dim] per row and does not scale the scores.
  q = (q.astype(jnp.float32) * (head_dim**-0.5)).astype(q.dtype).transpose(0, 2, 1, 3)
  k, v = k.astype(q.dtype).transpose(0, 2, 1, 3), v.astype(q.dtype).transpose(0, 2, 1, 3)
  kernel = _splash_kernel(num_heads, padded, block, interpret)
  segments = splash.SegmentIds(q=segment_ids, kv=segment_ids)
  out = jax.vmap(kernel)(q, k, v, segment_ids=segments)
  return out.transpose(0, 2, 1, 3)[:, :length]


def splash_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  segment_ids: jax.Array,
  *,
  block_size: int = DEFAULT_BLOCK_SIZE,
  interpret: bool | None = None,
) -> jax.Array:
  """Causal grouped-query self-attention within equal segment ids, by the splash kernel.

  Args:
    q: [batch, length, heads, head_dim].
    k, v: [batch, length, kv_heads, head_dim]; heads is a multiple of kv_heads.
    segment_ids: int32 [batch, length]; tokens attend earlier tokens of the same id (0 marks padding).
    block_size: kernel tile along queries and keys, a multiple of 128.
    interpret: run the kernel in the Pallas interpreter; default: when not compiling for TPU.

  Returns:
    [batch, length, heads, head_dim] in q's dtype.

  Raises:
    ValueError: mismatched shapes, or a rules table that shards the sequence.
  """
  b, t, h, dh = q.shape
  if k.shape != v.shape or k.shape[:2] != (b, t) or k.shape[3] != dh or h % k.shape[2]:
    raise ValueError(
      f"splash_attention needs q [b, t, h, d] and k, v [b, t, kv_heads, d] with h a multiple "
      f"of kv_heads; got q {q.shape}, k {k.shape}, v {v.shape}"
    )
  if segment_ids.shape != (b, t):
    raise ValueError(f"segment_ids must be [batch, length] = {(b, t)}, got {segment_ids.shape}")
  if interpret is None:
    interpret = target_platform() != "tpu"
  local = functools.partial(_local_splash, block_size=block_size, interpret=interpret)
  active = sharding.active_rules()
  if active is None:
    return local(q, k, v, segment_ids)
  mesh, rules = active
  batch_axes, length_axes, head_axes, _ = sharding.logical_to_spec(_QKV_AXES, rules)
  if length_axes is not None:
    raise ValueError(
      f"splash attention needs whole sequences per device, but the rules shard 'length' over "
      f"{length_axes}; use attention='xla' or map 'length' to no mesh axis"
    )
  # Axes that do not divide a dimension replicate it (redundant work, same result).
  batch_axes = sharding.dividing_axes(batch_axes, b, mesh)
  head_axes = sharding.dividing_axes(head_axes, k.shape[2], mesh)  # kv heads divide => query heads divide too.
  qkv_spec = PartitionSpec(batch_axes, None, head_axes, None)
  mapped = jax.shard_map(
    local,
    mesh=mesh,
    in_specs=(qkv_spec, qkv_spec, qkv_spec, PartitionSpec(batch_axes, None)),
    out_specs=qkv_spec,
    check_vma=False,
  )
  return mapped(q, k, v, segment_ids)
