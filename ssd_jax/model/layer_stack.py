"""Decoder blocks stacked along a leading 'layers' axis and run with `jax.lax.scan`.

A deep model traced as a Python loop unrolls every block into the program: compile time grows with
depth, and the compiler may overlap the backward passes of neighbouring blocks, holding several
blocks' activations at once. Scanning one block over stacked parameters compiles the block once and
keeps one block's working set live at a time. The stacked layout is a parameter layout only: the
same weights give the same outputs as the unstacked model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import ssd_jax.model.router_stats as router_stats
from ssd_jax.model.config import ModelConfig
from ssd_jax.model.layers import DecoderBlock
from ssd_jax.model.moe import feed_forward

LAYERS_AXIS = "layers"


def stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> DecoderBlock:
  """One DecoderBlock whose parameters carry a leading [num_layers] axis named 'layers'.

  The blocks must be alike (ModelConfig checks this), so layer 0 says whether they are MoE.
  """

  @nnx.split_rngs(splits=cfg.num_layers)
  @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: LAYERS_AXIS})
  def make(rngs):
    return DecoderBlock(cfg, rngs=rngs, feed_forward=feed_forward(cfg, 0))

  return make(rngs)


def scan_blocks(
  blocks: DecoderBlock,
  x: jax.Array,
  cos,
  sin,
  mask,
  segment_ids,
  kv=None,
  *,
  remat_policy: Callable | None = None,
  remat: bool = False,
):
  """Runs the stacked blocks in order over x; MoE blocks' RouterStats are recorded in the caller's trace.

  Args:
    blocks: from `stacked_blocks`.
    x: [batch, length, embed].
    cos, sin, mask, segment_ids: as for DecoderBlock.__call__ (shared by every layer).
    kv: None, or (k_all, v_all, index, valid) with k_all, v_all every layer's cache (`cache_layout`) and
      valid bool [batch, cache].
    remat_policy: jax.checkpoint policy of each block when `remat` (None saves nothing).
    remat: recompute each block in the backward pass.

  Returns:
    (x [batch, length, embed], (k_all, v_all) updated, or None without a cache).
  """
  graphdef, stacked = nnx.split(blocks)

  # The cache rides in the carry and each layer writes its slots in place at its index. As scan inputs and
  # outputs, every step would slice each layer's whole cache out and copy it back: traffic in max_len, not in
  # the filled slots, and twice the cache per token.
  @router_stats.returning_stats
  def block_forward(layer_state, x, kv_carry, layer):
    block = nnx.merge(graphdef, layer_state)
    layer_kv = None if kv_carry is None else (*kv_carry, layer, kv[2], kv[3])
    return block(x, cos, sin, mask, layer_kv, segment_ids)

  if remat:
    # No CSE barrier needed: a scan body cannot be merged with the forward pass.
    block_forward = jax.checkpoint(block_forward, policy=remat_policy, prevent_cse=False)

  def body(carry, layer_state):
    x, kv_carry, layer = carry
    (x, kv_carry), stats = block_forward(layer_state, x, kv_carry, layer)
    return (x, kv_carry, layer + 1), stats

  kv_carry = None if kv is None else tuple(kv[:2])
  (x, updated, _), stats = jax.lax.scan(body, (x, kv_carry, jnp.int32(0)), stacked)
  router_stats.record(stats)
  return x, updated


def _is_variable(x: Any) -> bool:
  return isinstance(x, nnx.Variable)


def stack_layers(layer_states: list[Any]) -> Any:
  """Per-layer states (e.g. of `model.layers[i]`) -> the stacked layout, 'layers' prepended to names."""

  def stack(*variables):
    first = variables[0]
    names = first.get_metadata("out_sharding", None)
    value = jnp.stack([v.get_value() for v in variables])
    return first.replace(value) if names is None else first.replace(value, out_sharding=(LAYERS_AXIS, *names))

  return jax.tree.map(stack, *layer_states, is_leaf=_is_variable)


def unstack_layers(stacked: Any, num_layers: int) -> list[Any]:
  """The inverse of `stack_layers`: `num_layers` per-layer states."""

  def take(variable, i):
    names = variable.get_metadata("out_sharding", None)
    value = variable.get_value()[i]
    return variable.replace(value) if names is None else variable.replace(value, out_sharding=tuple(names[1:]))

  return [jax.tree.map(lambda v, i=i: take(v, i), stacked, is_leaf=_is_variable) for i in range(num_layers)]
