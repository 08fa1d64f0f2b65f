"""Map a per-token function over chunks of tokens, so vocabulary-sized intermediates stay small.

Full-vocabulary losses need [tokens, vocab] float32 logits. `map_token_chunks` flattens the
[batch, length] token grid, scans over fixed-size chunks of it and calls the function once per
chunk, so only [chunk, vocab] logits exist at any time. Each call is wrapped in
`jax.checkpoint`: the backward pass recomputes a chunk's logits instead of keeping them, so
the gradient is also computed one chunk at a time. Outputs are per token ([batch, length, ...]),
which is small; reductions (masks, sums) happen outside, on those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def map_token_chunks(
  fn: Callable[[PyTree, PyTree], PyTree],
  per_token: PyTree,
  shared: PyTree,
  *,
  chunk_size: int,
) -> PyTree:
  """Applies `fn` to chunks of tokens and returns its outputs for every token.

  Args:
    fn: `fn(chunk, shared) -> outputs`, where `chunk` is `per_token` with each leaf cut to
      [chunk_size, ...] and every output leaf has shape [chunk_size, ...]. It must treat
      tokens independently (padding tokens, zeros, are appended to fill the last chunk and
      their outputs dropped).
    per_token: pytree of arrays with leading dims [batch, length].
    shared: pytree of arrays used by every chunk (e.g. an unembedding matrix [embed, vocab]).
    chunk_size: tokens per chunk, >= 1; need not divide batch * length.

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
  num_tokens = batch * length
  chunk_size = min(chunk_size, num_tokens)
  num_chunks = -(-num_tokens // chunk_size)
  padding = num_chunks * chunk_size - num_tokens

  def to_chunks(x):
    flat = x.reshape((num_tokens,) + x.shape[2:])
    flat = jnp.pad(flat, [(0, padding)] + [(0, 0)] * (flat.ndim - 1))
    return flat.reshape((num_chunks, chunk_size) + x.shape[2:])

  def from_chunks(y):
    flat = y.reshape((num_chunks * chunk_size,) + y.shape[2:])[:num_tokens]
    return flat.reshape((batch, length) + y.shape[2:])

  # Checkpointing the chunk keeps only its inputs as residuals; its [chunk, vocab] logits are
  # recomputed in the backward pass rather than stored for all chunks.
  chunk_fn = jax.checkpoint(fn)

  def body(carry, chunk):
    return carry, chunk_fn(chunk, shared)

  _, outputs = jax.lax.scan(body, None, jax.tree.map(to_chunks, per_token))
  return jax.tree.map(from_chunks, outputs)
