"""Masked teacher-student divergence losses: from full logits, or chunked from hidden states.

Both forms compute, per response position, `divergences.divergence` between the tempered
student and teacher distributions (optionally bucketed to the student's top-k plus a tail),
optionally multiply it by a clipped importance weight, and return (sum, count) over the mask.
The teacher's inputs are put under `jax.lax.stop_gradient` here, so only the student gets
gradients whatever the caller passes. The loss is not rescaled by temperature**2.

The chunked form takes final hidden states and unembedding matrices and works `chunk_size`
tokens at a time (see `token_chunks`), so [batch, length, vocab] float32 logits never exist;
its value and gradients equal those of the logits form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.train.cross_entropy import project_to_logits
from ssd_jax.train.divergences import check_kind_and_beta, divergence, importance_weight, log_probs, top_k_with_tail
from ssd_jax.train.loss_reduction import masked_sum
from ssd_jax.train.token_chunks import map_token_chunks


def _position_terms(
  student_logits: jax.Array,
  teacher_logits: jax.Array,
  tokens: jax.Array,
  *,
  kind: str,
  beta: float,
  temperature: float,
  top_k: int | None,
) -> tuple[jax.Array, jax.Array]:
  """Per-position divergence and student log-prob of `tokens`, each float32 [...].

  Args:
    student_logits: float [..., vocab].
    teacher_logits: float [..., vocab].
    tokens: int [...] sampled tokens (used for importance weights only).
  """
  # 1. Tempered log-probs in float32; the teacher carries no gradient.
  student_logp = log_probs(student_logits, temperature)
  teacher_logp = log_probs(jax.lax.stop_gradient(teacher_logits), temperature)
  # 2. Student log-prob of the sampled token, for the importance weight.
  token_logp = jnp.take_along_axis(student_logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]
  # 3. Optionally restrict both to the student's top-k plus a tail bucket.
  if top_k is not None:
    student_logp, teacher_logp = top_k_with_tail(student_logp, teacher_logp, top_k)
  # 4. The divergence itself.
  return divergence(student_logp, teacher_logp, kind=kind, beta=beta), token_logp


def _reduce(
  per_position: jax.Array,
  token_logp: jax.Array,
  mask: jax.Array,
  behaviour_logprob: jax.Array | None,
  is_clip: float | None,
) -> tuple[jax.Array, jax.Array]:
  if behaviour_logprob is not None:
    per_position = per_position * importance_weight(token_logp, behaviour_logprob, is_clip)
  return masked_sum(per_position, mask)


def _check_args(
  kind: str,
  beta: float,
  temperature: float,
  top_k: int | None,
  token_shape: tuple[int, ...],
  tokens: jax.Array | None,
  behaviour_logprob: jax.Array | None,
) -> jax.Array:
  """Validates shared arguments; returns the tokens (zeros when not needed)."""
  check_kind_and_beta(kind, beta)
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if top_k is not None and top_k < 1:
    raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
  if behaviour_logprob is not None:
    if tokens is None:
      raise ValueError("behaviour_logprob needs the sampled tokens (pass tokens=...)")
    if behaviour_logprob.shape != token_shape:
      raise ValueError(f"behaviour_logprob shape {behaviour_logprob.shape} must equal the token shape {token_shape}")
  if tokens is None:
    return jnp.zeros(token_shape, jnp.int32)
  if tokens.shape != token_shape:
    raise ValueError(f"tokens shape {tokens.shape} must equal the token shape {token_shape}")
  return tokens


def divergence_from_logits(
  student_logits: jax.Array,
  teacher_logits: jax.Array,
  mask: jax.Array,
  *,
  kind: str,
  beta: float = 0.5,
  temperature: float = 1.0,
  top_k: int | None = None,
  tokens: jax.Array | None = None,
  behaviour_logprob: jax.Array | None = None,
  is_clip: float | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Masked divergence between student and teacher from full logits.

  Args:
    student_logits: float [batch, length, vocab].
    teacher_logits: float [batch, length, vocab], aligned to the same response tokens.
    mask: bool or float [batch, length].
    kind: 'forward_kl' (KL(teacher || student)), 'reverse_kl' (KL(student || teacher)) or 'jsd'.
    beta: JSD teacher weight in [0, 1]; 0 and 1 give the forward and reverse KL exactly.
    temperature: > 0, divides both sides' logits.
    top_k: None for the full vocabulary, else the student's top-k plus one tail bucket.
    tokens: int [batch, length] sampled tokens; needed with `behaviour_logprob`.
    behaviour_logprob: optional float [batch, length] log-probs of the tokens under the parameters that
      sampled them, at `temperature`, untruncated (`distill_step.make_behaviour_logprobs`); each
      position's divergence is then multiplied by the stop-gradient weight
      min(exp(log p_s(token) - behaviour_logprob), is_clip), p_s at `temperature`.
    is_clip: importance-weight clip (> 0) or None.

  Returns:
    (sum, count), float32 scalars.
  """
  if student_logits.shape != teacher_logits.shape:
    raise ValueError(f"student_logits shape {student_logits.shape} != teacher_logits shape {teacher_logits.shape}")
  tokens = _check_args(kind, beta, temperature, top_k, student_logits.shape[:-1], tokens, behaviour_logprob)
  per_position, token_logp = _position_terms(
    student_logits, teacher_logits, tokens, kind=kind, beta=beta, temperature=temperature, top_k=top_k
  )
  return _reduce(per_position, token_logp, mask, behaviour_logprob, is_clip)


def chunked_divergence(
  student_hidden: jax.Array,
  student_unembedding: jax.Array,
  teacher_hidden: jax.Array,
  teacher_unembedding: jax.Array,
  mask: jax.Array,
  *,
  kind: str,
  chunk_size: int,
  beta: float = 0.5,
  temperature: float = 1.0,
  top_k: int | None = None,
  tokens: jax.Array | None = None,
  behaviour_logprob: jax.Array | None = None,
  is_clip: float | None = None,
) -> tuple[jax.Array, jax.Array]:
  """`divergence_from_logits` of hidden @ unembedding, `chunk_size` tokens at a time.

  Args:
    student_hidden: [batch, length, embed] student final hidden states.
    student_unembedding: [embed, vocab].
    teacher_hidden: [batch, length, teacher_embed] teacher final hidden states, aligned to the
      same response tokens (gradient stopped).
    teacher_unembedding: [teacher_embed, vocab] (gradient stopped).
    mask: bool or float [batch, length].
    kind, beta, temperature, top_k, tokens, behaviour_logprob, is_clip: as in
      `divergence_from_logits`.
    chunk_size: tokens per chunk; need not divide batch * length.

  Returns:
    (sum, count), float32 scalars.
  """
  if student_hidden.shape[:2] != teacher_hidden.shape[:2]:
    raise ValueError(
      f"student_hidden shape {student_hidden.shape} and teacher_hidden shape "
      f"{teacher_hidden.shape} must share [batch, length]"
    )
  if student_unembedding.shape[1] != teacher_unembedding.shape[1]:
    raise ValueError(
      f"student and teacher vocabularies differ: {student_unembedding.shape} vs {teacher_unembedding.shape}"
    )
  tokens = _check_args(kind, beta, temperature, top_k, student_hidden.shape[:2], tokens, behaviour_logprob)
  teacher_hidden = jax.lax.stop_gradient(teacher_hidden)
  teacher_unembedding = jax.lax.stop_gradient(teacher_unembedding)

  def chunk_terms(chunk, unembeddings):
    s_hidden, t_hidden, chunk_tokens = chunk
    s_w, t_w = unembeddings
    return _position_terms(
      project_to_logits(s_hidden, s_w),
      project_to_logits(t_hidden, t_w),
      chunk_tokens,
      kind=kind,
      beta=beta,
      temperature=temperature,
      top_k=top_k,
    )

  per_position, token_logp = map_token_chunks(
    chunk_terms,
    (student_hidden, teacher_hidden, tokens),
    (student_unembedding, teacher_unembedding),
    chunk_size=chunk_size,
  )
  return _reduce(per_position, token_logp, mask, behaviour_logprob, is_clip)
