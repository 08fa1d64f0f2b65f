"""Sampled-token estimator: unbiased for the divergence and its gradient, checked by enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.train.divergence_losses import divergence_from_logits
from ssd_jax.train.divergences import log_probs
from ssd_jax.train.sampled_divergence import (
  sampled_token_divergence,
  sampled_token_losses,
  sampled_value_and_coefficient,
)

V = 7
CASES = [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3), ("jsd", 0.0), ("jsd", 1.0)]


def _logits(seed):
  return (1.5 * np.random.default_rng(seed).normal(size=(V,))).astype(np.float32)


@pytest.mark.parametrize("kind,beta", CASES)
def test_expectation_over_student_samples_gives_divergence_and_its_gradient(kind, beta):
  """Sum over every token y of p_s(y) x (per-token loss) reproduces the full divergence."""
  student, teacher = _logits(0), _logits(1)
  temperature = 0.8
  tokens = jnp.arange(V)[None, :]  # one "position" per possible sampled token
  ones = jnp.ones((1, V))

  def expected_loss(z):
    ls = log_probs(z, temperature)
    lt = log_probs(teacher, temperature)
    per_token = sampled_token_losses(ls[tokens], lt[tokens], kind=kind, beta=beta)
    return jnp.sum(jax.lax.stop_gradient(jnp.exp(ls))[tokens] * per_token * ones)

  def full(z):
    return divergence_from_logits(
      z[None, None], teacher[None, None], jnp.ones((1, 1)), kind=kind, beta=beta, temperature=temperature
    )[0]

  v_est, g_est = jax.value_and_grad(expected_loss)(student)
  v_full, g_full = jax.value_and_grad(full)(student)
  np.testing.assert_allclose(v_est, v_full, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(g_est, g_full, rtol=1e-4, atol=1e-6)


def test_value_and_gradient_are_exactly_v_and_coefficient():
  rng = np.random.default_rng(2)
  ls = rng.normal(-2, 1, size=(2, 6)).astype(np.float32)
  lt = rng.normal(-2, 1, size=(2, 6)).astype(np.float32)
  mask = np.ones((2, 6), np.float32)
  mask[1, 4:] = 0
  for kind, beta in CASES:
    v, c = sampled_value_and_coefficient(ls, lt, kind=kind, beta=beta)
    total, count = sampled_token_divergence(ls, lt, mask, kind=kind, beta=beta)
    g_s, g_t = jax.grad(lambda a, b: sampled_token_divergence(a, b, mask, kind=kind, beta=beta)[0], argnums=(0, 1))(
      ls, lt
    )
    np.testing.assert_allclose(total, np.sum(np.asarray(v) * mask), rtol=1e-6)
    assert count == mask.sum()
    np.testing.assert_allclose(g_s, np.asarray(c) * mask, rtol=1e-6)
    assert np.all(np.asarray(g_t) == 0)


def test_reverse_kl_estimator_is_the_log_ratio():
  ls = np.array([[-1.0, -2.0]], np.float32)
  lt = np.array([[-1.5, -0.5]], np.float32)
  v, c = sampled_value_and_coefficient(ls, lt, kind="reverse_kl")
  np.testing.assert_allclose(v, [[0.5, -1.5]])
  np.testing.assert_allclose(c, [[0.5, -1.5]])


def test_importance_weight_clips_and_scales_value_and_gradient():
  ls = np.array([[-1.0, -2.0, -3.0]], np.float32)
  lt = np.array([[-1.5, -0.5, -2.0]], np.float32)
  behaviour = np.array([[-3.0, -2.5, -2.9]], np.float32)
  mask = np.ones((1, 3), np.float32)
  w = np.minimum(np.exp(ls.astype(np.float64) - behaviour), 2.0)
  assert w[0, 0] == 2.0 and w[0, 1] < 2.0
  loss = lambda a: sampled_token_divergence(a, lt, mask, kind="reverse_kl", behaviour_logprob=behaviour, is_clip=2.0)[0]
  value, grad = jax.value_and_grad(loss)(ls)
  np.testing.assert_allclose(value, np.sum(w * (ls - lt)), rtol=1e-6)
  np.testing.assert_allclose(grad, w * (ls - lt), rtol=1e-6)


def test_shape_mismatch_raises():
  with pytest.raises(ValueError, match="teacher_logprob shape"):
    sampled_token_divergence(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.ones((2, 3)), kind="reverse_kl")


@pytest.mark.parametrize("kind, beta", [("forward_kl", 0.5), ("jsd", 0.5), ("jsd", 0.0)])
def test_a_token_the_student_all_but_rules_out_gives_a_finite_loss_and_gradient(kind, beta):
  # The teacher's log-prob 94 above the student's: exp of the ratio overflows float32.
  student, teacher, mask = jnp.array([[-95.0, -1.0]]), jnp.array([[-1.0, -2.0]]), jnp.ones((1, 2))
  loss = lambda s: sampled_token_divergence(s, teacher, mask, kind=kind, beta=beta)[0]
  value, grad = jax.value_and_grad(loss)(student)
  assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
