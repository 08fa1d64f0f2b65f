"""Grouped matmul for mixture-of-experts: rows sorted by group times that group's matrix.

`grouped_matmul(lhs [m, k], rhs [groups, k, n], group_sizes [groups])` multiplies rows
sum(sizes[:g]) .. sum(sizes[:g+1]) of lhs by rhs[g]; rows past sum(group_sizes) come out zero.
Three implementations, all differentiable in lhs and rhs:
- 'ragged_dot': `jax.lax.ragged_dot` (the reference). XLA:CPU computes it as a masked dense product
  against every group, so its cost grows with the number of groups (16 groups: 12x a dense matmul);
- 'tiled': plain XLA at the cost of about m + groups x tile rows: lhs is cut into row tiles, and each
  (tile, group) pair that overlaps is one batched matmul whose rows outside the group are masked;
- 'megablox': the Pallas TPU grouped matmul (`jax.experimental.pallas.ops.tpu.megablox`), interpreted
  off TPU. It needs m to be a multiple of its row tile, so lhs is padded with zero rows and cut back.
'auto' is megablox when compiling for TPU and tiled elsewhere (and on TPU for matrices whose sides are not
multiples of 128, which the kernel's blocks cannot tile in both the forward and the backward products:
`resolve_grouped_matmul_impl`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.kernels.attention import target_platform

GROUPED_MATMUL_IMPLS = ("auto", "ragged_dot", "tiled", "megablox")
# Row / contraction / output tile of the megablox kernel: multiples of the TPU's 128 lanes.
_MEGABLOX_TILE = 128
# Rows per tile of the 'tiled' implementation: fewer wasted rows per group against bigger matmuls.
_ROW_TILE = 64


def resolve_grouped_matmul_impl(impl: str, k: int, n: int, platform: str | None = None) -> str:
  """The implementation a ModelConfig.moe_matmul value names for [m, k] x [groups, k, n] products.

  'auto' is megablox on TPU when k and n are whole 128-lane tiles (the backward product swaps them, so
  both must be), tiled otherwise.

  Args:
    impl: one of GROUPED_MATMUL_IMPLS.
    k, n: the contraction and output sizes.
    platform: the compile target ('tpu', 'gpu', 'cpu'); default: the current one.

  Raises:
    ValueError: an unknown implementation name.
  """
  if impl not in GROUPED_MATMUL_IMPLS:
    raise ValueError(f"grouped matmul implementation must be one of {GROUPED_MATMUL_IMPLS}, got {impl!r}")
  if impl != "auto":
    return impl
  platform = platform or target_platform()
  whole_tiles = k % _MEGABLOX_TILE == 0 and n % _MEGABLOX_TILE == 0
  return "megablox" if platform == "tpu" and whole_tiles else "tiled"


def _megablox(lhs: jax.Array, rhs: jax.Array, group_sizes: jax.Array, out_dtype) -> jax.Array:
  from jax.experimental.pallas.ops.tpu.megablox import ops as megablox  # pylint: disable=g-import-not-at-top

  m, k = lhs.shape
  n = rhs.shape[2]
  padded = -(-m // _MEGABLOX_TILE) * _MEGABLOX_TILE
  if padded != m:
    lhs = jnp.pad(lhs, ((0, padded - m), (0, 0)))
  tiling = (_MEGABLOX_TILE, min(k, _MEGABLOX_TILE), min(n, _MEGABLOX_TILE))
  out = megablox.gmm(lhs, rhs, group_sizes, out_dtype, tiling, interpret=target_platform() != "tpu")
  return out[:m]


def _tiled(lhs: jax.Array, rhs: jax.Array, group_sizes: jax.Array, tile: int = _ROW_TILE) -> jax.Array:
  m, k = lhs.shape
  groups, _, n = rhs.shape
  tiles = -(-m // tile)
  ends = jnp.cumsum(group_sizes)
  starts = ends - group_sizes
  # Tiles each group overlaps: first_tile .. first_tile + spans - 1 (none when empty).
  first_tile = starts // tile
  spans = jnp.where(group_sizes > 0, (ends + tile - 1) // tile - first_tile, 0)
  visit_ends = jnp.cumsum(spans)
  # A group boundary inside a tile adds one visit to that tile: at most tiles + groups - 1 visits.
  visits = jnp.arange(tiles + groups - 1)
  group = jnp.minimum(jnp.searchsorted(visit_ends, visits, side="right"), groups - 1)
  tile_index = jnp.clip(first_tile[group] + visits - (visit_ends[group] - spans[group]), 0, tiles - 1)
  lhs_tiles = jnp.pad(lhs, ((0, tiles * tile - m), (0, 0))).reshape(tiles, tile, k)
  out = jnp.einsum(
    "vtk,vkn->vtn", lhs_tiles[tile_index], rhs[group].astype(lhs.dtype), preferred_element_type=jnp.float32
  )
  rows = tile_index[:, None] * tile + jnp.arange(tile)
  in_group = (rows >= starts[group][:, None]) & (rows < ends[group][:, None]) & (visits < visit_ends[-1])[:, None]
  out = jnp.where(in_group[..., None], out, 0)
  return jnp.zeros((tiles, tile, n), jnp.float32).at[tile_index].add(out).reshape(tiles * tile, n)[:m]


def grouped_matmul(lhs: jax.Array, rhs: jax.Array, group_sizes: jax.Array, impl: str = "auto") -> jax.Array:
  """Per-group matmul of row-sorted lhs.

  Args:
    lhs: [m, k], rows sorted by group.
    rhs: [groups, k, n].
    group_sizes: int32 [groups], rows of each group; sum(group_sizes) <= m.
    impl: one of GROUPED_MATMUL_IMPLS.

  Returns:
    [m, n] in lhs's dtype (accumulated in float32); rows past sum(group_sizes) are zero.
  """
  if lhs.ndim != 2 or rhs.ndim != 3 or lhs.shape[1] != rhs.shape[1] or group_sizes.shape != rhs.shape[:1]:
    raise ValueError(
      f"grouped_matmul needs lhs [m, k], rhs [groups, k, n], group_sizes [groups]; got {lhs.shape}, "
      f"{rhs.shape}, {group_sizes.shape}"
    )
  group_sizes = group_sizes.astype(jnp.int32)
  resolved = resolve_grouped_matmul_impl(impl, lhs.shape[1], rhs.shape[2])
  if resolved == "megablox":
    # The kernel leaves rows past the last group unwritten, in its output and in the lhs gradient:
    # selecting (not multiplying) on both sides keeps whatever is there out of the results.
    in_a_group = (jnp.arange(lhs.shape[0]) < jnp.sum(group_sizes))[:, None]
    out = _megablox(jnp.where(in_a_group, lhs, 0), rhs.astype(lhs.dtype), group_sizes, jnp.float32)
    out = jnp.where(in_a_group, out, 0)
  elif resolved == "tiled":
    out = _tiled(lhs, rhs, group_sizes)
  else:
    out = jax.lax.ragged_dot(lhs, rhs.astype(lhs.dtype), group_sizes, preferred_element_type=jnp.float32)
  return out.astype(lhs.dtype)
