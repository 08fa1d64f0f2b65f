"""Map a per-token function over chunks of tokens, so vocabulary-sized intermediates stay small.

Full-vocabulary losses need [tokens, vocab] float32 logits. `map_token_chunks` cuts each device's rows along
the sequence: chunk i holds positions [i * p, (i + 1) * p) of the device's rows, and a scan calls the function
once per chunk, so only [rows, p, vocab] logits exist on a device at any time. Under `sharding.use_rules` the
scan runs inside a `shard_map` over the mesh axes the batch is sharded on: every device computes the logits
of its own rows, the shared arrays (the unembedding) are gathered once on entry and their gradient summed once
on exit. (Scanning over the flattened global token grid instead ran the scan along the sharded batch axis and
moved every chunk of logits between chips.) Each call is wrapped in `jax.checkpoint`: the backward pass
recomputes a chunk's logits instead of keeping them, so the gradient is also computed one chunk at a time.
Outputs are per token ([batch, length, ...]), which is small; reductions (masks, sums) happen outside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from ssd_jax import sharding

PyTree = Any


def _batch_shard_map(batch: int) -> tuple[Any, tuple[str, ...]] | None:
  """(mesh, mesh axes of 'batch') when the active rules shard `batch` rows evenly over several devices."""
  active = sharding.active_rules()
  if active is None:
    return None
  mesh, rules = active
  axes = sharding.logical_to_spec(("batch",), rules)[0]
  axes = sharding.as_axes(axes)
  shards = sharding.axes_size(mesh, axes)
  if shards == 1 or batch % shards:
    return None
  return mesh, axes


def _scan_chunks(fn: Callable[[PyTree, PyTree], PyTree], per_token: PyTree, shared: PyTree, chunk_size: int) -> PyTree:
  """The scan over sequence chunks of [rows, length, ...] leaves (rows: all of them, or one device's)."""
  rows, length = jax.tree.leaves(per_token)[0].shape[:2]
  positions = max(1, min(length, chunk_size // rows))
  num_chunks = -(-length // positions)
  padding = num_chunks * positions - length

  def to_chunks(x):  # [rows, length, ...] -> [num_chunks, rows, positions, ...]
    x = jnp.pad(x, [(0, 0), (0, padding)] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x.reshape((rows, num_chunks, positions) + x.shape[2:]), 1, 0)

  def from_chunks(y):  # [num_chunks, rows, positions, ...] -> [rows, length, ...]
    y = jnp.moveaxis(y, 0, 1)
    return y.reshape((rows, num_chunks * positions) + y.shape[3:])[:, :length]

  # Checkpointing the chunk keeps only its inputs as residuals; its [rows, positions, vocab] logits are
  # recomputed in the backward pass rather than stored for all chunks.
  chunk_fn = jax.checkpoint(fn)

  def body(carry, chunk):
    return carry, chunk_fn(chunk, shared)

  _, outputs = jax.lax.scan(body, None, jax.tree.map(to_chunks, per_token))
  return jax.tree.map(from_chunks, outputs)


def map_token_chunks(
  fn: Callable[[PyTree, PyTree], PyTree],
  per_token: PyTree,
  shared: PyTree,
  *,
  chunk_size: int,
) -> PyTree:
  """Applies `fn` to chunks of positions and returns its outputs for every token.

  Args:
    fn: `fn(chunk, shared) -> outputs`, where `chunk` is `per_token` with each leaf cut to [rows, p, ...]
      (p positions of a device's rows) and every output leaf has shape [rows, p, ...]. It must treat tokens
      independently (padding positions, zeros, are appended to fill the last chunk and their outputs dropped).
    per_token: pytree of arrays with leading dims [batch, length].
    shared: pytree of arrays used by every chunk (e.g. an unembedding matrix [embed, vocab]).
    chunk_size: tokens per chunk on one device, >= 1: a chunk spans p = max(1, chunk_size // rows) positions
      (at most `length`) of the device's rows, so [chunk_size, vocab] is the largest logits buffer (or
      [rows, vocab] when rows exceed chunk_size).

  Returns:
    `fn`'s outputs for all tokens, each leaf [batch, length, ...].
  """
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  leaves = jax.tree.leaves(per_token)
  if not leaves:
    raise ValueError("per_token must hold at least one array")
  batch, length = leaves[0].shape[:2]
  for leaf in leaves:
    if leaf.shape[:2] != (batch, length):
      raise ValueError(
        f"per_token arrays must share leading dims [batch, length] = {(batch, length)}, got shape {leaf.shape}"
      )
  scan = lambda tokens, common: _scan_chunks(fn, tokens, common, chunk_size)
  placement = _batch_shard_map(batch)
  if placement is None:
    return scan(per_token, shared)
  mesh, axes = placement
  rows = PartitionSpec(axes)
  manual = frozenset(axes)
  if all(size == 1 for axis, size in mesh.shape.items() if axis not in manual):
    manual = frozenset(mesh.axis_names)  # Nothing else is sharded: a fully manual map.
  else:
    # Partly automatic maps lower the gradient's psum with a sharding constraint in its reducer, which the
    # CPU compiler's bf16 all-reduce promotion cannot handle: sum low-precision shared arrays in float32.
    low = lambda x: jnp.issubdtype(x.dtype, jnp.floating) and jnp.dtype(x.dtype).itemsize < 4
    shared = jax.tree.map(lambda x: x.astype(jnp.float32) if low(x) else x, shared)

  def per_device(tokens, common):
    # Marking the shared arrays per-device before the scan puts the psum of their gradient here, once,
    # instead of inside the scan body (once per chunk).
    return scan(tokens, jax.tree.map(lambda x: jax.lax.pcast(x, axes, to="varying"), common))

  per_device = jax.shard_map(
    per_device,
    mesh=mesh,
    in_specs=(jax.tree.map(lambda _: rows, per_token), jax.tree.map(lambda _: PartitionSpec(), shared)),
    out_specs=rows,
    axis_names=manual,
  )
  return per_device(per_token, shared)
