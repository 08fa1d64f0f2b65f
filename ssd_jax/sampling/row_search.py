"""Passes over whole rows: several reductions in one read, and the bisection that probes several thresholds
per read (the reference's search for a cut-off over the whole vocabulary, `truncation`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.kernels import truncation_ops as ops

Weights = tuple[jax.Array, ...]
# Thresholds each step of the whole-row search probes: on CPU a step costs its read of the row
# more than its counting, so a few thresholds per read take fewer reads (bench/sampler_directions.py).
THRESHOLDS_PER_PASS = 4


def _row_reductions(parts) -> tuple[jax.Array, ...]:
  """Several reductions over the last axis in one pass: int32 [rows, 1] each.

  XLA on CPU runs each jnp reduction over a row as its own pass, and masked min/max ones far
  slower than sums; one variadic reduce reads the row once (integers: the same results).

  Args:
    parts: (array [rows, n], init scalar, combine) triples.
  """
  arrays, inits, combines = zip(*parts)
  inits = tuple(jnp.asarray(i, a.dtype) for a, i in zip(arrays, inits))
  out = jax.lax.reduce(arrays, inits, lambda a, b: tuple(f(u, v) for f, u, v in zip(combines, a, b)), (1,))
  return tuple(o[:, None] for o in out)


def row_sums(weights: Weights) -> Weights:
  """Each weight summed over its row, in one pass: tuple of int32 [rows, 1]."""
  return _row_reductions(tuple((w, 0, jnp.add) for w in weights))


def sums_at_or_above(keys: jax.Array, weights: Weights, t: jax.Array) -> Weights:
  """Each weight summed over the entries with keys >= t: tuple of int32 [rows, 1]."""
  kept = keys >= t
  return row_sums(tuple(jnp.where(kept, w, 0) for w in weights))


def probe_keys(keys: jax.Array, weights: Weights, t: jax.Array) -> tuple[Weights, jax.Array, jax.Array]:
  """One pass over each row for every threshold in t: `sums_at_or_above`, the lowest key >= t and the highest key < t.

  Args:
    keys: int32 [rows, n]. weights: tuple of int32 [rows, n]. t: int32 [rows, m] thresholds.

  Returns:
    (sums, lowest, highest): the sums as in `sums_at_or_above`, then lowest and highest
    (INT32_MAX / INT32_MIN when there is none), int32 [rows, m] each.
  """
  parts = []
  for i in range(t.shape[1]):
    kept = keys >= t[:, i : i + 1]
    above, below = ops.nearest_keys(keys, t[:, i : i + 1])
    parts += [(jnp.where(kept, w, 0), 0, jnp.add) for w in weights]
    parts += [(above, ops.INT32_MAX, jnp.minimum), (below, ops.INT32_MIN, jnp.maximum)]
  out = _row_reductions(parts)
  per_threshold = len(weights) + 2
  column = lambda j: jnp.concatenate(out[j::per_threshold], axis=-1)
  return tuple(column(j) for j in range(len(weights))), column(len(weights)), column(len(weights) + 1)


def search_cutoff(keys: jax.Array, weights: Weights, holds, lo: jax.Array, hi: jax.Array) -> jax.Array:
  """Largest t in [lo, hi) where `holds` of the weights summed over {keys >= t} is true.

  `bisect_largest` with `THRESHOLDS_PER_PASS` thresholds per step, every step one pass over the
  whole row (`probe_keys`).

  Args:
    keys: int32 [rows, vocab] order keys.
    weights: tuple of int32 [rows, vocab] (row sums fit int32).
    holds: maps that tuple's sums (int32 [rows, m] each) to bool [rows, m]; true at lo, and
      never made true by shrinking the set.
    lo: int32 [rows, 1]. hi: int32 [rows, 1], exclusive.

  Returns:
    int32 [rows, 1].
  """

  def probe(t):
    sums, lowest, highest = probe_keys(keys, weights, t)
    return holds(sums), lowest, highest

  return ops.bisect_largest(probe, lo, hi, THRESHOLDS_PER_PASS)
