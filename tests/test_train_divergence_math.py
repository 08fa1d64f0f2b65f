"""Divergences from full logits and top-k + tail against direct numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.train.divergence_losses import divergence_from_logits
from ssd_jax.train.divergences import divergence, importance_weight, top_k_with_tail

B, T, V = 2, 5, 11


def _logits(seed, scale=2.0):
  rng = np.random.default_rng(seed)
  return (scale * rng.normal(size=(B, T, V))).astype(np.float32)


def _mask():
  mask = np.ones((B, T), np.float32)
  mask[1, 3:] = 0
  return mask


def _np_log_softmax(x, temperature=1.0):
  x = x.astype(np.float64) / temperature
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_kl(logp, logq):
  return (np.exp(logp) * (logp - logq)).sum(-1)


def _np_divergence(ls, lt, kind, beta):
  if kind == "forward_kl":
    return _np_kl(lt, ls)
  if kind == "reverse_kl":
    return _np_kl(ls, lt)
  log_m = np.log(beta * np.exp(lt) + (1 - beta) * np.exp(ls))
  return beta * _np_kl(lt, log_m) + (1 - beta) * _np_kl(ls, log_m)


CASES = [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1), ("jsd", 0.9)]


@pytest.mark.parametrize("kind,beta", CASES)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_full_divergence_matches_numpy(kind, beta, temperature):
  s, t, mask = _logits(0), _logits(1), _mask()
  total, count = divergence_from_logits(s, t, mask, kind=kind, beta=beta, temperature=temperature)
  per_pos = _np_divergence(_np_log_softmax(s, temperature), _np_log_softmax(t, temperature), kind, beta)
  np.testing.assert_allclose(total, (per_pos * mask).sum(), rtol=1e-5)
  assert count == mask.sum()


def test_jsd_endpoints_are_the_kls_and_continuous():
  s, t, mask = _logits(2, scale=1.0), _logits(3, scale=1.0), _mask()

  def loss(kind, beta):
    return float(divergence_from_logits(s, t, mask, kind=kind, beta=beta)[0])

  forward, reverse = loss("forward_kl", 0.5), loss("reverse_kl", 0.5)
  assert loss("jsd", 0.0) == forward
  assert loss("jsd", 1.0) == reverse
  # JSD(beta) / beta -> forward KL and JSD(beta) / (1 - beta) -> reverse KL, converging.
  gaps = [(abs(loss("jsd", eps) / eps - forward), abs(loss("jsd", 1 - eps) / eps - reverse)) for eps in (1e-2, 1e-3)]
  assert gaps[1][0] < gaps[0][0] and gaps[1][1] < gaps[0][1]
  np.testing.assert_allclose(gaps[1], 0.0, atol=5e-3 * max(forward, reverse))


@pytest.mark.parametrize("kind,beta", CASES + [("jsd", 0.0), ("jsd", 1.0)])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_divergence_of_a_distribution_with_itself_is_zero(kind, beta, temperature):
  s = _logits(4, scale=5.0)
  total, _ = divergence_from_logits(s, s, _mask(), kind=kind, beta=beta, temperature=temperature)
  np.testing.assert_allclose(total, 0.0, atol=1e-5)


def _np_student_logit_grad(s, t, kind, beta, temperature):
  """d divergence / d student logits: softmax chain rule of dD/dp_s."""
  ls, lt = _np_log_softmax(s, temperature), _np_log_softmax(t, temperature)
  ps = np.exp(ls)
  if kind == "forward_kl":
    return (ps - np.exp(lt)) / temperature
  if kind == "reverse_kl":
    c = ls - lt
  else:
    c = (1 - beta) * (ls - np.log(beta * np.exp(lt) + (1 - beta) * ps))
  return ps * (c - (ps * c).sum(-1, keepdims=True)) / temperature


@pytest.mark.parametrize("kind,beta", CASES)
def test_gradient_goes_to_student_only_and_matches_numpy(kind, beta):
  s, t, mask = _logits(5), _logits(6), _mask()
  g_s, g_t = jax.grad(
    lambda a, b: divergence_from_logits(a, b, mask, kind=kind, beta=beta, temperature=1.3)[0], argnums=(0, 1)
  )(s, t)
  assert np.all(np.asarray(g_t) == 0)
  ref = _np_student_logit_grad(s, t, kind, beta, 1.3) * mask[..., None]
  np.testing.assert_allclose(g_s, ref, rtol=1e-4, atol=1e-6)


def test_masked_positions_do_not_count():
  s, t, mask = _logits(7), _logits(8), _mask()
  s2 = s.copy()
  s2[1, 3:] = np.nan
  a = divergence_from_logits(s, t, mask, kind="jsd")[0]
  b = divergence_from_logits(s2, t, mask, kind="jsd")[0]
  assert float(a) == float(b)


def _np_top_k_buckets(ls, lt, k):
  order = np.argsort(-ls, axis=-1, kind="stable")[..., :k]

  def buckets(lp):
    top = np.take_along_axis(lp, order, -1)
    tail = np.log(np.maximum(1 - np.exp(top).sum(-1, keepdims=True), 1e-300))
    return np.concatenate([top, tail], -1)

  return buckets(ls), buckets(lt)


@pytest.mark.parametrize("kind,beta", CASES)
@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_k_with_tail_matches_numpy_and_lower_bounds(kind, beta, k):
  s, t, mask = _logits(9), _logits(10), _mask()
  total, _ = divergence_from_logits(s, t, mask, kind=kind, beta=beta, top_k=k)
  bs, bt = _np_top_k_buckets(_np_log_softmax(s), _np_log_softmax(t), k)
  ref = (_np_divergence(bs, bt, kind, beta) * mask).sum()
  np.testing.assert_allclose(total, ref, rtol=1e-4)
  full, _ = divergence_from_logits(s, t, mask, kind=kind, beta=beta)
  assert float(total) <= float(full) + 1e-6  # bucketing never increases a divergence


@pytest.mark.parametrize("kind,beta", CASES + [("jsd", 0.0)])
def test_top_k_equal_to_vocab_is_the_full_divergence(kind, beta):
  s, t, mask = _logits(11), _logits(12), _mask()

  def loss(a, top_k):
    return divergence_from_logits(a, t, mask, kind=kind, beta=beta, top_k=top_k)[0]

  for top_k in (V, V + 5):
    v_top, g_top = jax.value_and_grad(loss)(s, top_k)
    v_full, g_full = jax.value_and_grad(loss)(s, None)
    np.testing.assert_allclose(v_top, v_full, rtol=1e-5)
    np.testing.assert_allclose(g_top, g_full, rtol=1e-4, atol=1e-6)


def test_top_k_tail_is_the_remaining_mass_and_student_picks_buckets():
  ls = jnp.log(jnp.array([0.5, 0.1, 0.3, 0.1]))
  lt = jnp.log(jnp.array([0.1, 0.6, 0.2, 0.1]))
  bs, bt = top_k_with_tail(ls, lt, 2)
  np.testing.assert_allclose(np.exp(bs), [0.5, 0.3, 0.2], rtol=1e-6)
  np.testing.assert_allclose(np.exp(bt), [0.1, 0.2, 0.7], rtol=1e-6)


def test_zero_probability_entries_are_handled():
  ls = jnp.log(jnp.array([0.5, 0.5, 0.0]))
  lt = jnp.log(jnp.array([0.25, 0.75, 0.0]))
  for kind in ("forward_kl", "reverse_kl", "jsd"):
    value, grad = jax.value_and_grad(lambda a: divergence(a, lt, kind=kind))(ls)
    ref = _np_divergence(np.log([0.5, 0.5]), np.log([0.25, 0.75]), kind, 0.5)
    np.testing.assert_allclose(value, ref, rtol=1e-6)
    assert np.all(np.isfinite(grad))


def test_importance_weight_is_clipped_exactly_and_has_no_gradient():
  current = jnp.array([0.0, -1.0, -2.0, -0.5], jnp.float32)
  behaviour = jnp.array([-2.0, -1.0, -0.5, -0.7], jnp.float32)
  w = importance_weight(current, behaviour, 2.0)
  ref = np.minimum(np.exp(np.float64(current) - np.float64(behaviour)), 2.0)
  np.testing.assert_allclose(w, ref, rtol=1e-6)
  assert float(w[0]) == 2.0
  np.testing.assert_allclose(
    importance_weight(current, behaviour, None), np.exp(np.float64(current) - np.float64(behaviour)), rtol=1e-6
  )
  g = jax.grad(lambda c: importance_weight(c, behaviour, 2.0).sum())(current)
  assert np.all(np.asarray(g) == 0)


def test_importance_weight_multiplies_each_position():
  s, t, mask = _logits(13), _logits(14), _mask()
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, V, size=(B, T)).astype(np.int32)
  behaviour = rng.normal(-2, 1, size=(B, T)).astype(np.float32)
  total, _ = divergence_from_logits(
    s, t, mask, kind="reverse_kl", temperature=0.8, tokens=tokens, behaviour_logprob=behaviour, is_clip=2.0
  )
  ls, lt = _np_log_softmax(s, 0.8), _np_log_softmax(t, 0.8)
  current = np.take_along_axis(ls, tokens[..., None], -1)[..., 0]
  w = np.minimum(np.exp(current - behaviour), 2.0)
  assert 0 < (w == 2.0).sum() < w.size  # some clipped, some not
  np.testing.assert_allclose(total, (w * _np_kl(ls, lt) * mask).sum(), rtol=1e-5)


def test_bad_arguments_raise():
  s, t, mask = _logits(0), _logits(1), _mask()
  with pytest.raises(ValueError, match="kind"):
    divergence_from_logits(s, t, mask, kind="kl")
  with pytest.raises(ValueError, match="beta"):
    divergence_from_logits(s, t, mask, kind="jsd", beta=1.5)
  with pytest.raises(ValueError, match="temperature"):
    divergence_from_logits(s, t, mask, kind="jsd", temperature=0.0)
  with pytest.raises(ValueError, match="top_k"):
    divergence_from_logits(s, t, mask, kind="jsd", top_k=0)
  with pytest.raises(ValueError, match="tokens"):
    divergence_from_logits(s, t, mask, kind="jsd", behaviour_logprob=mask)
  with pytest.raises(ValueError, match="shape"):
    divergence_from_logits(s, t[:, :2], mask, kind="jsd")
