"""Sort-based truncation: the textbook formulation, kept as a test oracle and a benchmark baseline.

It sorts every row and takes cumulative sums in float32, the way most inference engines do top-p.
It is not used for sampling; `truncation` is the implementation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.sampling.params import RowParams
from ssd_jax.sampling.truncation import tempered_logits


def sorted_kept_mask(logits: jax.Array, rows: RowParams) -> jax.Array:
  """bool [batch, vocab] kept set by sorting: top-k, then top-p, then min-p, ties kept.

  Args:
    logits: [batch, vocab] float32 or bfloat16.
    rows: per-row parameters, arrays of shape [batch].

  Returns:
    bool [batch, vocab].
  """
  vocab = logits.shape[-1]
  z = tempered_logits(logits, rows)
  descending = -jnp.sort(-z, axis=-1)

  k = rows.top_k[:, None]
  k_on = (k > 0) & (k < vocab)
  kth = jnp.take_along_axis(descending, jnp.clip(k - 1, 0, vocab - 1), axis=-1)
  kept = jnp.where(k_on, z >= kth, True)

  # Top-p over the survivors: the first sorted position whose inclusive mass reaches p.
  survivors = jnp.where(jnp.take_along_axis(kept, jnp.argsort(-z, axis=-1), axis=-1), descending, -jnp.inf)
  probs = jax.nn.softmax(survivors, axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs
  p = rows.top_p[:, None]
  last = jnp.sum(before < p, axis=-1, keepdims=True) - 1
  p_threshold = jnp.take_along_axis(descending, last, axis=-1)
  kept = kept & jnp.where(p < 1.0, z >= p_threshold, True)

  row_probs = jax.nn.softmax(z, axis=-1)
  top_prob = jnp.max(row_probs, axis=-1, keepdims=True)
  kept = kept & (row_probs >= rows.min_p[:, None] * top_prob)
  greedy = (rows.temperature <= 0)[:, None]
  return jnp.where(greedy, z == jnp.max(z, axis=-1, keepdims=True), kept)


def sorted_sample(logits: jax.Array, rows: RowParams, key: jax.Array) -> jax.Array:
  """int32 [batch] tokens drawn from the sort-based truncated distribution (benchmark baseline)."""
  z = tempered_logits(logits, rows)
  masked = jnp.where(sorted_kept_mask(logits, rows), z, -jnp.inf)
  return jax.random.categorical(key, masked, axis=-1).astype(jnp.int32)
