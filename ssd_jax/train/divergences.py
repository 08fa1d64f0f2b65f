"""Per-position divergences between a student and a teacher distribution over the vocabulary.

Convention (one everywhere in the project):

* forward KL = KL(teacher || student) = sum_v p_t(v) (log p_t(v) - log p_s(v));
* reverse KL = KL(student || teacher) = sum_v p_s(v) (log p_s(v) - log p_t(v));
* generalized JSD(beta): M = beta p_t + (1 - beta) p_s,
  JSD = beta KL(p_t || M) + (1 - beta) KL(p_s || M).

JSD(beta) goes to 0 at both ends of [0, 1]; divided by beta it tends to the forward KL as
beta -> 0, and divided by (1 - beta) to the reverse KL as beta -> 1. The endpoints are therefore
defined as those KLs exactly: `kind='jsd'` with beta = 0 computes the forward KL and with
beta = 1 the reverse KL. Note the scale jump this implies (JSD(0.01) is about 0.01 x forward KL).

The functions here take log-probabilities (float32, already tempered) and return one value per
position; they know nothing about masks, chunks or where the teacher came from. Zero-probability
entries (log-prob -inf) contribute 0 where they carry no mass.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

DIVERGENCE_KINDS = ("forward_kl", "reverse_kl", "jsd")

# Log-probs are floored here so that -inf (zero mass) never meets 0 * inf or inf - inf; exp of
# the floor is exactly 0 in float32, so values are unchanged.
_LOG_FLOOR = -1e30


def check_kind_and_beta(kind: str, beta: float) -> None:
  """Raises ValueError naming the bad argument."""
  if kind not in DIVERGENCE_KINDS:
    raise ValueError(f"kind must be one of {DIVERGENCE_KINDS}, got {kind!r}")
  if not 0.0 <= beta <= 1.0:
    raise ValueError(f"beta must be in [0, 1], got {beta}")


def log_probs(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """float32 log_softmax(logits / temperature) over the last axis, [..., vocab]."""
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def kl_divergence(logp: jax.Array, logq: jax.Array) -> jax.Array:
  """KL(p || q) over the last axis from log-probs [..., n]; returns [...]."""
  logp = jnp.maximum(logp, _LOG_FLOOR)
  logq = jnp.maximum(logq, _LOG_FLOOR)
  return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def _log_mixture(logp_teacher: jax.Array, logp_student: jax.Array, beta: float) -> jax.Array:
  """log M = log(beta p_t + (1 - beta) p_s) for 0 < beta < 1, elementwise."""
  return jnp.logaddexp(
    math.log(beta) + jnp.maximum(logp_teacher, _LOG_FLOOR), math.log1p(-beta) + jnp.maximum(logp_student, _LOG_FLOOR)
  )


def divergence(student_logp: jax.Array, teacher_logp: jax.Array, *, kind: str, beta: float = 0.5) -> jax.Array:
  """Divergence between student and teacher at each position.

  Args:
    student_logp: float32 [..., vocab] student log-probs.
    teacher_logp: float32 [..., vocab] teacher log-probs (the caller stops its gradient).
    kind: 'forward_kl' (KL(teacher || student)), 'reverse_kl' (KL(student || teacher)) or
      'jsd' (generalized JSD; beta = 0 and 1 are the forward and reverse KL exactly).
    beta: JSD mixture weight of the teacher, in [0, 1]; a Python float (it selects the
      endpoint cases at trace time). Ignored for the KLs.

  Returns:
    float32 [...].
  """
  check_kind_and_beta(kind, beta)
  if student_logp.shape != teacher_logp.shape:
    raise ValueError(f"student and teacher shapes differ: {student_logp.shape} vs {teacher_logp.shape}")
  if kind == "forward_kl" or (kind == "jsd" and beta == 0.0):
    return kl_divergence(teacher_logp, student_logp)
  if kind == "reverse_kl" or (kind == "jsd" and beta == 1.0):
    return kl_divergence(student_logp, teacher_logp)
  log_m = _log_mixture(teacher_logp, student_logp, beta)
  return beta * kl_divergence(teacher_logp, log_m) + (1.0 - beta) * kl_divergence(student_logp, log_m)


def _log_tail_mass(logp: jax.Array, in_top: jax.Array) -> jax.Array:
  """log of the mass outside `in_top`, [...]; -inf when every entry is in it."""
  rest = jnp.where(in_top, -jnp.inf, logp)
  peak = jax.lax.stop_gradient(jnp.max(rest, axis=-1, keepdims=True))
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  mass = jnp.sum(jnp.exp(rest - peak), axis=-1)
  # The inner `where` keeps log(0) out of the gradient when the tail is empty.
  return jnp.where(mass > 0, jnp.log(jnp.where(mass > 0, mass, 1.0)) + peak[..., 0], -jnp.inf)


def top_k_with_tail(student_logp: jax.Array, teacher_logp: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Restricts both distributions to the student's top-k tokens plus one tail bucket.

  The buckets are the k tokens the student ranks highest at each position (ties broken by
  lower id) and one bucket holding the remaining mass of each distribution. A divergence of the
  bucketed distributions lower-bounds the full one and equals it when k >= vocab.

  Args:
    student_logp: float32 [..., vocab].
    teacher_logp: float32 [..., vocab].
    k: bucket count before the tail, >= 1 (clamped to vocab).

  Returns:
    (student, teacher) log-probs over the buckets, each float32 [..., k + 1]; the last entry is
    the tail (-inf when empty).
  """
  if k < 1:
    raise ValueError(f"top_k must be >= 1, got {k}")
  k = min(k, student_logp.shape[-1])
  _, top_ids = jax.lax.top_k(jax.lax.stop_gradient(student_logp), k)
  in_top = jnp.put_along_axis(jnp.zeros(student_logp.shape, bool), top_ids, True, axis=-1, inplace=False)

  def bucket(logp):
    top = jnp.take_along_axis(logp, top_ids, axis=-1)
    return jnp.concatenate([top, _log_tail_mass(logp, in_top)[..., None]], axis=-1)

  return bucket(student_logp), bucket(teacher_logp)


def importance_weight(current_logprob: jax.Array, behaviour_logprob: jax.Array, clip: float | None) -> jax.Array:
  """Clipped importance weight min(exp(current - behaviour), clip), gradient stopped.

  Args:
    current_logprob: float [...] log-prob of the sampled token under the current student.
    behaviour_logprob: float [...] its log-prob under the parameters that sampled it, at the same temperature
      and untruncated (`distill_step.make_behaviour_logprobs`).
    clip: upper bound (> 0) or None for no clipping.

  Returns:
    float32 [...], under `jax.lax.stop_gradient`.
  """
  if clip is not None and not clip > 0:
    raise ValueError(f"importance-weight clip must be > 0 or None, got {clip}")
  log_ratio = current_logprob.astype(jnp.float32) - behaviour_logprob.astype(jnp.float32)
  if clip is not None:
    log_ratio = jnp.minimum(log_ratio, math.log(clip))
  return jax.lax.stop_gradient(jnp.exp(log_ratio))
