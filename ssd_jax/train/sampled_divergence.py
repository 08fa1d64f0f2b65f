"""Sampled-token divergence estimator: one log-ratio per position, on the token the student drew.

For a response y drawn from the student, at each position t with sampled token y_t, let
ls = log p_s(y_t) (current student, differentiable) and lt = log p_t(y_t) (teacher, no
gradient). A divergence D(p_s, p_t) = sum_v f(p_s(v), p_t(v)) has

  E_{y~p_s}[v(y)] = D          and          grad D = E_{y~p_s}[c(y) grad log p_s(y)]

for a per-token value v and coefficient c = dD/dp_s(y) (constants, whose expectation against
grad log p_s is zero, dropped). With r = exp(lt - ls) and log M = log(beta e^lt + (1-beta) e^ls):

  kind          v (value estimate)                               c (gradient coefficient)
  reverse_kl    ls - lt                                           ls - lt
  forward_kl    r (lt - ls)                                       -r
  jsd(beta)     beta r (lt - log M) + (1-beta) (ls - log M)       (1-beta) (ls - log M)

The per-token loss is stop_gradient(v) + stop_gradient(c) * (ls - stop_gradient(ls)): its value
is v and its gradient is exactly c * grad ls, a score-function (REINFORCE) gradient with the
coefficient held constant, as in the token-level estimators of SDPO / OPSD. It is unbiased for
the per-position divergence when y_t is drawn from the current student at the loss temperature
and untruncated; it ignores how earlier tokens change later positions' states. The forward-KL
coefficient is an importance ratio and has high variance. JSD endpoints follow `divergences`:
beta = 0 is the forward KL, beta = 1 the reverse KL.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ssd_jax.train.divergences import check_kind_and_beta, importance_weight
from ssd_jax.train.loss_reduction import masked_sum

# exp(log-ratio) stays finite in float32: a token the student all but rules out (the teacher's log-prob 88 or
# more above its own) would make the forward-KL coefficient inf, and inf * 0 a NaN loss.
_MAX_LOG_RATIO = 80.0


def _ratio(lt: jax.Array, ls: jax.Array) -> jax.Array:
  return jnp.exp(jnp.minimum(lt - ls, _MAX_LOG_RATIO))


def sampled_value_and_coefficient(
  student_logprob: jax.Array, teacher_logprob: jax.Array, *, kind: str, beta: float = 0.5
) -> tuple[jax.Array, jax.Array]:
  """Per-token value estimate v and gradient coefficient c (table in the module docstring).

  Args:
    student_logprob: float [...] log p_s of the sampled tokens.
    teacher_logprob: float [...] log p_t of the same tokens.
    kind: 'forward_kl', 'reverse_kl' or 'jsd'.
    beta: JSD teacher weight in [0, 1] (Python float).

  Returns:
    (v, c), float32 [...] each, both under stop_gradient.
  """
  check_kind_and_beta(kind, beta)
  ls = jax.lax.stop_gradient(student_logprob.astype(jnp.float32))
  lt = jax.lax.stop_gradient(teacher_logprob.astype(jnp.float32))
  if kind == "forward_kl" or (kind == "jsd" and beta == 0.0):
    ratio = _ratio(lt, ls)
    return ratio * (lt - ls), -ratio
  if kind == "reverse_kl" or (kind == "jsd" and beta == 1.0):
    return ls - lt, ls - lt
  log_m = jnp.logaddexp(math.log(beta) + lt, math.log1p(-beta) + ls)
  student_term = (1.0 - beta) * (ls - log_m)
  return beta * _ratio(lt, ls) * (lt - log_m) + student_term, student_term


def sampled_token_losses(
  student_logprob: jax.Array, teacher_logprob: jax.Array, *, kind: str, beta: float = 0.5
) -> jax.Array:
  """Per-token losses with value v and gradient c * grad(student_logprob), float32 [...]."""
  value, coefficient = sampled_value_and_coefficient(student_logprob, teacher_logprob, kind=kind, beta=beta)
  ls = student_logprob.astype(jnp.float32)
  return value + coefficient * (ls - jax.lax.stop_gradient(ls))


def sampled_token_divergence(
  student_logprob: jax.Array,
  teacher_logprob: jax.Array,
  mask: jax.Array,
  *,
  kind: str,
  beta: float = 0.5,
  behaviour_logprob: jax.Array | None = None,
  is_clip: float | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Masked sampled-token divergence loss, (sum, count).

  Args:
    student_logprob: float [batch, length] current student log-probs of the sampled tokens,
      at the loss temperature (differentiable).
    teacher_logprob: float [batch, length] teacher log-probs of the same tokens at the same
      temperature (its gradient is stopped here).
    mask: bool or float [batch, length].
    kind: 'forward_kl', 'reverse_kl' or 'jsd'.
    beta: JSD teacher weight in [0, 1].
    behaviour_logprob: optional float [batch, length] log-probs of the tokens under the parameters that
      sampled them, at the loss temperature, untruncated; when given, each token's loss is multiplied by the
      stop-gradient weight min(exp(student_logprob - behaviour_logprob), is_clip).
    is_clip: importance-weight clip (> 0), None for none.

  Returns:
    (sum, count), float32 scalars.
  """
  if student_logprob.shape != teacher_logprob.shape:
    raise ValueError(f"student_logprob shape {student_logprob.shape} != teacher_logprob shape {teacher_logprob.shape}")
  losses = sampled_token_losses(student_logprob, jax.lax.stop_gradient(teacher_logprob), kind=kind, beta=beta)
  if behaviour_logprob is not None:
    losses = losses * importance_weight(student_logprob, behaviour_logprob, is_clip)
  return masked_sum(losses, mask)
