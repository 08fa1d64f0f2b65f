"""Cross-entropy on response tokens, plain and chunked over tokens.

`chunked_cross_entropy` takes the final hidden states and the unembedding matrix instead of
logits and never holds [batch, length, vocab] float32 logits: see `token_chunks`. Both return
(sum, count) over the masked tokens; the loss is sum / count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.train.loss_reduction import masked_sum
from ssd_jax.train.token_chunks import map_token_chunks


def project_to_logits(hidden: jax.Array, unembedding: jax.Array) -> jax.Array:
  """float32 logits [..., vocab] = hidden [..., embed] @ unembedding [embed, vocab]."""
  if hidden.shape[-1] != unembedding.shape[0]:
    raise ValueError(f"hidden embed dim {hidden.shape[-1]} does not match unembedding shape {unembedding.shape}")
  return jnp.einsum("...d,dv->...v", hidden, unembedding, preferred_element_type=jnp.float32)


def _check_targets(targets: jax.Array, leading: tuple[int, ...]) -> None:
  if targets.shape != leading:
    raise ValueError(f"targets shape {targets.shape} must equal the token shape {leading}")
  if not jnp.issubdtype(targets.dtype, jnp.integer):
    raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")


def token_logprobs(logits: jax.Array, targets: jax.Array, *, temperature: float = 1.0) -> jax.Array:
  """Log-probability of each target under softmax(logits / temperature).

  Args:
    logits: float [..., vocab].
    targets: int [...], ids in [0, vocab).
    temperature: > 0; 1 gives the model's raw log-probs.

  Returns:
    float32 [...].
  """
  _check_targets(targets, logits.shape[:-1])
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  x = logits.astype(jnp.float32) / temperature
  target_logit = jnp.take_along_axis(x, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return target_logit - jax.nn.logsumexp(x, axis=-1)


def cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Masked cross-entropy from full logits.

  Args:
    logits: float [batch, length, vocab].
    targets: int [batch, length].
    mask: bool or float [batch, length], nonzero on the tokens that count.

  Returns:
    (sum of -log p(target), number of masked tokens), float32 scalars.
  """
  return masked_sum(-token_logprobs(logits, targets), mask)


def chunked_token_logprobs(
  hidden: jax.Array, unembedding: jax.Array, targets: jax.Array, *, chunk_size: int, temperature: float = 1.0
) -> jax.Array:
  """`token_logprobs` of hidden @ unembedding, computed `chunk_size` tokens at a time.

  Args:
    hidden: [batch, length, embed] final hidden states (after the final norm).
    unembedding: [embed, vocab].
    targets: int [batch, length].
    chunk_size: tokens per chunk; [chunk_size, vocab] float32 is the largest logits buffer.
    temperature: > 0.

  Returns:
    float32 [batch, length].
  """
  _check_targets(targets, hidden.shape[:2])

  def chunk_logprobs(chunk, w):
    h, t = chunk
    return token_logprobs(project_to_logits(h, w), t, temperature=temperature)

  return map_token_chunks(chunk_logprobs, (hidden, targets), unembedding, chunk_size=chunk_size)


def chunked_cross_entropy(
  hidden: jax.Array, unembedding: jax.Array, targets: jax.Array, mask: jax.Array, *, chunk_size: int
) -> tuple[jax.Array, jax.Array]:
  """`cross_entropy` of hidden @ unembedding without materialising [batch, length, vocab] logits.

  Value and gradients (wrt hidden and unembedding) equal those of the plain version; the
  backward pass recomputes each chunk's logits.

  Args:
    hidden: [batch, length, embed].
    unembedding: [embed, vocab].
    targets: int [batch, length].
    mask: bool or float [batch, length].
    chunk_size: tokens per chunk; need not divide batch * length.

  Returns:
    (sum, count), float32 scalars.
  """
  logprobs = chunked_token_logprobs(hidden, unembedding, targets, chunk_size=chunk_size)
  return masked_sum(-logprobs, mask)
