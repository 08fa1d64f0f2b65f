"""Row blocks read tile by tile inside a Pallas sampling kernel, and per-threshold values moved between lanes.

A kernel holds a block of rows [rows, block_vocab] and loops over vocabulary tiles [rows, tile]; `RowTiles`
reads tile j in each of the forms the passes need. Several thresholds probed in one pass travel as lanes of
one [rows, n] array, but a kernel cannot slice lanes: `threshold_columns` and `stack_columns` convert with
masked reductions and selects on a lane iota.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ssd_jax.kernels import truncation_ops as ops


class RowTiles:
  """Reads tile j of the row block: raw logits, shifted tempered logits, keys, top-p weights."""

  def __init__(self, x_ref, key_ref, weight_ref, tile, vocab):
    self.x_ref, self.key_ref, self.weight_ref = x_ref, key_ref, weight_ref
    self.tile, self.vocab = tile, vocab
    self.raw_max = self.inverse_temperature = None  # set once known

  def window(self, j):
    return pl.ds(pl.multiple_of(j * self.tile, self.tile), self.tile)

  def index(self, j):
    """int32 [rows, tile] global vocabulary index of each entry."""
    return lax.broadcasted_iota(jnp.int32, (self.x_ref.shape[0], self.tile), 1) + j * self.tile

  def raw(self, j):
    """float32 [rows, tile] logits; columns past the vocabulary (block overhang) are -inf."""
    x = self.x_ref[:, self.window(j)].astype(jnp.float32)
    if self.x_ref.shape[1] == self.vocab:
      return x
    return jnp.where(self.index(j) < self.vocab, x, -jnp.inf)

  def tempered(self, j):
    return ops.tempered(self.raw(j), self.raw_max, self.inverse_temperature)

  def keys(self, j):
    if self.key_ref is None:
      return ops.order_key(self.tempered(j))
    return self.key_ref[:, self.window(j)]

  def weight_parts(self, j):
    if self.weight_ref is None:
      return ops.mass_parts(self.tempered(j))
    return ops.mass_limbs(self.weight_ref[:, self.window(j)])


def tile_loop(num_tiles, body, init):
  """`body(j, carry)` over tiles j = 0 .. num_tiles - 1; the carry is [rows, tile] per-lane partials."""
  return lax.fori_loop(0, num_tiles, body, init)


def row_sum(acc):
  """[rows, tile] per-lane partials -> [rows, 1] row totals."""
  return jnp.sum(acc, axis=-1, keepdims=True)


def threshold_columns(t: jax.Array) -> list[jax.Array]:
  """int32 [rows, n] thresholds as n [rows, 1] arrays, each a masked row max (no lane slicing in a kernel)."""
  if t.shape[1] == 1:
    return [t]
  lane = lax.broadcasted_iota(jnp.int32, t.shape, 1)
  return [jnp.max(jnp.where(lane == i, t, ops.INT32_MIN), axis=1, keepdims=True) for i in range(t.shape[1])]


def stack_columns(found: list[tuple[jax.Array, ...]]) -> tuple[jax.Array, ...]:
  """The inverse of `threshold_columns` for each field of n per-threshold tuples of [rows, 1] arrays: [rows, n] each."""
  return tuple(stack_column(list(column)) for column in zip(*found))


def stack_column(columns: list[jax.Array]) -> jax.Array:
  """n [rows, 1] arrays as one [rows, n], by selects on a lane iota."""
  if len(columns) == 1:
    return columns[0]
  if columns[0].dtype == jnp.bool_:  # Mosaic cannot select between narrow boolean vectors.
    return stack_column([c.astype(jnp.int32) for c in columns]) != 0
  shape = (columns[0].shape[0], len(columns))
  lane = lax.broadcasted_iota(jnp.int32, shape, 1)
  out = jnp.broadcast_to(columns[0], shape)
  for i, column in enumerate(columns[1:], start=1):
    out = jnp.where(lane == i, column, out)
  return out
