"""Routed experts, dropless: tokens sorted by expert, grouped matmuls, weighted sum back per token.

Every (token, choice) pair is computed; there is no capacity factor and no token is dropped.

On a mesh (under `sharding.use_rules`) the experts run inside `jax.shard_map`:
- tokens are split over the mesh axes of the logical 'batch' axis;
- expert weights are split over the 'expert' axis (expert parallelism), 'embed' (gathered here, as FSDP
  does) and 'mlp' (tensor parallelism: partial outputs summed over the 'mlp' axes);
- with an expert axis of size S > 1, each device sorts its assignments by expert, sends each group to
  the device holding that expert with a ragged all-to-all, runs its E / S experts on what it received,
  and sends the results back the same way. The receive buffer holds S x (local assignments) rows,
  the most any device can be sent, so routing never overflows it.
`jax.lax.ragged_all_to_all` is used on TPU and GPU; XLA:CPU lacks it, so there each peer gets a
fixed slot of the same worst-case size through `jax.lax.all_to_all` (same offsets, same result).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from ssd_jax import sharding
from ssd_jax.kernels.attention import target_platform
from ssd_jax.kernels.grouped_matmul import grouped_matmul, resolve_grouped_matmul_impl

GATE_UP_NAMES = ("expert", "embed", "mlp")
DOWN_NAMES = ("expert", "mlp", "embed")


def expert_ffn(rows, group_sizes, w_gate, w_up, w_down, impl: str) -> jax.Array:
  """SwiGLU of each row with its group's expert.

  Args:
    rows: [m, embed], sorted by expert.
    group_sizes: int32 [experts]; rows past their sum come out zero.
    w_gate, w_up: [experts, embed, mlp]; w_down: [experts, mlp, embed].
    impl: grouped matmul implementation.

  Returns:
    [m, embed] in rows' dtype.
  """
  gate = grouped_matmul(rows, w_gate, group_sizes, impl)
  up = grouped_matmul(rows, w_up, group_sizes, impl)
  return grouped_matmul(jax.nn.silu(gate) * up, w_down, group_sizes, impl)


def _exclusive_cumsum(x: jax.Array, axis: int = 0) -> jax.Array:
  return jnp.cumsum(x, axis=axis) - x


def _combine(out_sorted: jax.Array, order: jax.Array, weights: jax.Array) -> jax.Array:
  """Unsorts expert outputs [m, embed] and sums each token's top_k outputs weighted: [tokens, embed]."""
  tokens, top_k = weights.shape
  out = jnp.zeros_like(out_sorted).at[order].set(out_sorted, unique_indices=True)
  out = out.reshape(tokens, top_k, -1)
  return jnp.einsum("nkd,nk->nd", out, weights.astype(out.dtype), preferred_element_type=jnp.float32)


def _exchange(operand, output, input_offsets, send_sizes, output_offsets, recv_sizes, axis: str, ragged: bool):
  """`jax.lax.ragged_all_to_all`, or the same through all_to_all with operand-sized slots per peer."""
  if ragged:
    return jax.lax.ragged_all_to_all(
      operand, output, input_offsets, send_sizes, output_offsets, recv_sizes, axis_name=axis
    )
  capacity = operand.shape[0]
  offsets = jnp.arange(capacity)
  source = jnp.clip(input_offsets[:, None] + offsets, 0, capacity - 1)
  slots = jnp.where((offsets < send_sizes[:, None])[..., None], operand[source], 0)
  received = jax.lax.all_to_all(slots, axis, 0, 0)  # [peers, capacity, embed], by sender.
  where = jax.lax.all_to_all(output_offsets, axis, 0, 0, tiled=True)  # Our offset for each sender's rows.
  target = jnp.where(offsets < recv_sizes[:, None], where[:, None] + offsets, output.shape[0])
  return output.at[target.reshape(-1)].set(received.reshape(-1, output.shape[-1]), mode="drop")


def _sort_by_expert(expert_index: jax.Array, num_experts: int):
  """(order [m], counts [experts]): the stable sort of flattened assignments by expert."""
  flat = expert_index.reshape(-1)
  return jnp.argsort(flat, stable=True), jnp.bincount(flat, length=num_experts).astype(jnp.int32)


def _local_experts(x, expert_index, weights, w_gate, w_up, w_down, impl):
  """All experts on this device: [tokens, embed] float32."""
  order, counts = _sort_by_expert(expert_index, w_gate.shape[0])
  rows = x[order // expert_index.shape[1]]
  return _combine(expert_ffn(rows, counts, w_gate, w_up, w_down, impl), order, weights)


def _dispatched_experts(x, expert_index, weights, w_gate, w_up, w_down, impl, axis: str, ragged: bool):
  """Experts split over mesh axis `axis`: all-to-all to the experts' devices and back; [tokens, embed]."""
  peers = jax.lax.axis_size(axis)
  local = w_gate.shape[0]
  order, counts = _sort_by_expert(expert_index, local * peers)
  rows = x[order // expert_index.shape[1]]
  assignments, width = rows.shape
  # sizes[i, j]: rows device i sends to device j; its groups arrive sorted by expert.
  all_counts = jax.lax.all_gather(counts, axis).reshape(peers, peers, local)
  sizes = all_counts.sum(-1)
  me = jax.lax.axis_index(axis)
  send_sizes = sizes[me]
  recv_sizes = sizes[:, me]
  capacity = peers * assignments
  received = _exchange(
    rows,
    jnp.zeros((capacity, width), rows.dtype),
    _exclusive_cumsum(send_sizes),
    send_sizes,
    _exclusive_cumsum(sizes, axis=0)[me],
    recv_sizes,
    axis,
    ragged,
  )
  # Received rows are grouped by sender, then by our local expert; regroup by expert alone.
  mine = all_counts[:, me, :]  # [senders, local experts]
  expert_ids = jnp.repeat(
    jnp.concatenate([jnp.tile(jnp.arange(local), peers), jnp.asarray([local])]),
    jnp.concatenate([mine.reshape(-1), capacity - jnp.sum(mine)[None]]),
    total_repeat_length=capacity,
  )
  regroup = jnp.argsort(expert_ids, stable=True)
  out = expert_ffn(received[regroup], mine.sum(0), w_gate, w_up, w_down, impl)
  out = jnp.zeros_like(out).at[regroup].set(out, unique_indices=True)
  back = _exchange(
    out,
    jnp.zeros_like(rows),
    _exclusive_cumsum(recv_sizes),
    recv_sizes,
    _exclusive_cumsum(sizes, axis=1)[:, me],
    send_sizes,
    axis,
    ragged,
  )
  return _combine(back, order, weights)


def _spec_axes(entry) -> tuple[str, ...]:
  return () if entry is None else ((entry,) if isinstance(entry, str) else tuple(entry))


def moe_layout(cfg, mesh_shape: dict[str, int], rules, platform: str) -> dict[str, object]:
  """How an MoE model's experts run on a mesh (for the plan stage's report), or {} for a dense model.

  Training, prefill and every decode step use the same layout: a step's tokens are split over the
  'batch' mesh axes and sent to their experts' devices.

  Args:
    cfg: a ModelConfig.
    mesh_shape: mesh axis -> size.
    rules: logical-axis rules.
    platform: 'tpu', 'gpu' or 'cpu', the compile target.
  """
  if not cfg.num_experts:
    return {}
  expert_axes = _spec_axes(sharding.logical_to_spec(("expert",), rules)[0])
  peers = int(np.prod([mesh_shape.get(a, 1) for a in expert_axes]))
  exchange = "ragged_all_to_all" if platform != "cpu" else "all_to_all (fixed slots)"
  # Inside the exchange each device multiplies by its own share of the expert hidden units.
  mlp_shards = int(np.prod([mesh_shape.get(a, 1) for a in _spec_axes(sharding.logical_to_spec(("mlp",), rules)[0])]))
  local_mlp = cfg.moe_intermediate_size // mlp_shards
  grouped = resolve_grouped_matmul_impl(cfg.moe_matmul, cfg.hidden_size, local_mlp, platform)
  return {
    "expert_axes": list(expert_axes),
    "experts_per_device": cfg.num_experts // peers,
    "dispatch": exchange if peers > 1 else "none (every expert on every device)",
    "grouped_matmul": grouped,
    # Dropless: a device may receive every assignment of its expert-axis peers.
    "receive_buffer_rows_per_local_token": peers * cfg.num_experts_per_tok,
  }


def routed_experts(x, expert_index, weights, w_gate, w_up, w_down, impl: str = "auto") -> jax.Array:
  """Each token's weighted sum of its experts' SwiGLU outputs.

  Args:
    x: [tokens, embed].
    expert_index: int32 [tokens, top_k].
    weights: [tokens, top_k] routing weights.
    w_gate, w_up: [experts, embed, mlp]; w_down: [experts, mlp, embed].
    impl: grouped matmul implementation (see kernels.grouped_matmul).

  Returns:
    [tokens, embed] in x's dtype.
  """
  active = sharding.active_rules()
  if active is None:
    return _local_experts(x, expert_index, weights, w_gate, w_up, w_down, impl).astype(x.dtype)
  mesh, rules = active
  weight_rules = sharding.active_weight_rules()  # a decode layout places the expert weights apart
  token_axes = _spec_axes(sharding.logical_to_spec(("batch",), rules)[0])
  expert_axes, embed_axes, mlp_axes = map(_spec_axes, sharding.logical_to_spec(GATE_UP_NAMES, weight_rules))
  if len(expert_axes) > 1:
    raise ValueError(f"the 'expert' logical axis must map to at most one mesh axis, got {expert_axes}")
  if set(expert_axes) - set(token_axes) or set(mlp_axes) & set(token_axes):
    raise ValueError(
      f"MoE on a mesh needs the 'batch' rule's mesh axes {token_axes} to include the 'expert' axes "
      f"{expert_axes} and exclude the 'mlp' axes {mlp_axes}"
    )
  ragged = target_platform() != "cpu"

  def body(x, expert_index, weights, w_gate, w_up, w_down):
    if embed_axes:  # FSDP: gather the expert weights' embed dimension.
      w_gate = jax.lax.all_gather(w_gate, embed_axes, axis=1, tiled=True)
      w_up = jax.lax.all_gather(w_up, embed_axes, axis=1, tiled=True)
      w_down = jax.lax.all_gather(w_down, embed_axes, axis=2, tiled=True)
    if expert_axes and mesh.shape[expert_axes[0]] > 1:
      out = _dispatched_experts(x, expert_index, weights, w_gate, w_up, w_down, impl, expert_axes[0], ragged)
    else:
      out = _local_experts(x, expert_index, weights, w_gate, w_up, w_down, impl)
    if mlp_axes:  # Tensor parallelism: each device holds part of every expert's hidden units.
      out = jax.lax.psum(out, mlp_axes)
    return out.astype(x.dtype)

  tokens = x.shape[0]
  shards = int(np.prod([mesh.shape[a] for a in token_axes]))
  padded = -(-tokens // shards) * shards
  if padded != tokens:  # Padding rows go to expert 0 with weight 0 and are cut off below.
    pad = ((0, padded - tokens), (0, 0))
    x, expert_index, weights = jnp.pad(x, pad), jnp.pad(expert_index, pad), jnp.pad(weights, pad)
  row_spec = P(token_axes or None, None)
  gate_spec = sharding.logical_to_spec(GATE_UP_NAMES, weight_rules)
  down_spec = sharding.logical_to_spec(DOWN_NAMES, weight_rules)
  out = jax.shard_map(
    body,
    mesh=mesh,
    in_specs=(row_spec, row_spec, row_spec, gate_spec, gate_spec, down_spec),
    out_specs=row_spec,
    check_vma=False,  # Pallas calls (megablox) inside cannot declare how their outputs vary over the mesh.
  )(x, expert_index, weights, w_gate, w_up, w_down)
  return out[:tokens]
