"""Chunked divergences from hiddens equal the logits form; the config and its dispatch."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax.train.cross_entropy import project_to_logits, token_logprobs
from ssd_jax.train.distillation_loss import DivergenceConfig, distillation_loss
from ssd_jax.train.divergence_losses import chunked_divergence, divergence_from_logits
from ssd_jax.train.sampled_divergence import sampled_token_divergence

B, T, D, DT, V = 3, 5, 8, 6, 13


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *shape: rng.normal(size=shape).astype(np.float32)
  mask = np.ones((B, T), np.float32)
  mask[0, 3:] = 0
  return dict(
    student_hidden=f(B, T, D),
    student_unembedding=f(D, V),
    teacher_hidden=f(B, T, DT),
    teacher_unembedding=f(DT, V),
    mask=mask,
    tokens=rng.integers(0, V, size=(B, T)).astype(np.int32),
    behaviour_logprob=rng.normal(-2.5, 1.0, size=(B, T)).astype(np.float32),
  )


def _logits_loss(x, **kw):
  return divergence_from_logits(
    project_to_logits(x["student_hidden"], x["student_unembedding"]),
    project_to_logits(x["teacher_hidden"], x["teacher_unembedding"]),
    x["mask"],
    **kw,
  )[0]


def _chunked_loss(x, chunk_size, **kw):
  return chunked_divergence(
    x["student_hidden"],
    x["student_unembedding"],
    x["teacher_hidden"],
    x["teacher_unembedding"],
    x["mask"],
    chunk_size=chunk_size,
    **kw,
  )[0]


@pytest.mark.parametrize(
  "kind,beta,top_k", [("forward_kl", 0.5, None), ("reverse_kl", 0.5, 4), ("jsd", 0.3, None), ("jsd", 0.5, 4)]
)
@pytest.mark.parametrize("chunk_size", [4, 15])
def test_chunked_equals_logits_form_in_value_and_gradient(kind, beta, top_k, chunk_size):
  x = _inputs(1)
  tokens = x.pop("tokens")

  def kw(y):
    return dict(
      kind=kind,
      beta=beta,
      temperature=1.2,
      top_k=top_k,
      tokens=tokens,
      behaviour_logprob=y["behaviour_logprob"],
      is_clip=2.0,
    )

  v_ref, g_ref = jax.value_and_grad(lambda y: _logits_loss(y, **kw(y)))(x)
  v, g = jax.jit(jax.value_and_grad(lambda y: _chunked_loss(y, chunk_size, **kw(y))))(x)
  np.testing.assert_allclose(v, v_ref, rtol=1e-5)
  for name in ("student_hidden", "student_unembedding"):
    assert np.abs(g_ref[name]).max() > 0
    np.testing.assert_allclose(g[name], g_ref[name], rtol=1e-4, atol=1e-6)
  for name in ("teacher_hidden", "teacher_unembedding", "behaviour_logprob"):
    assert np.all(np.asarray(g[name]) == 0)


def test_live_teacher_sharing_weights_gets_no_gradient_through_teacher_side():
  x = _inputs(2)
  w = x["student_unembedding"]
  teacher_hidden = x["student_hidden"] + 0.5

  def shared(u):
    return chunked_divergence(x["student_hidden"], u, teacher_hidden, u, x["mask"], kind="jsd", chunk_size=4)[0]

  def frozen(u):
    return chunked_divergence(x["student_hidden"], u, teacher_hidden, w, x["mask"], kind="jsd", chunk_size=4)[0]

  np.testing.assert_allclose(jax.grad(shared)(w), jax.grad(frozen)(w), rtol=1e-6)


def test_chunked_divergence_memory_does_not_grow_with_vocab_times_tokens():
  b, d, v, chunk = 2, 32, 8192, 128

  def temp_bytes(length):
    h = jax.ShapeDtypeStruct((b, length, d), jnp.float32)
    u = jax.ShapeDtypeStruct((d, v), jnp.float32)
    m = jax.ShapeDtypeStruct((b, length), jnp.float32)
    loss = lambda sh, su, th, tu, mm: chunked_divergence(sh, su, th, tu, mm, kind="jsd", chunk_size=chunk)[0]
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return step.lower(h, u, h, u, m).compile().memory_analysis().temp_size_in_bytes

  short, long = temp_bytes(1024), temp_bytes(4096)
  logits_growth = b * (4096 - 1024) * v * 4
  assert long - short < logits_growth / 20  # per-token arrays only, no [tokens, vocab] buffer
  assert long < b * 4096 * v * 4 / 8


@pytest.mark.parametrize("kind,beta", [("forward_kl", 0.5), ("jsd", 0.5), ("jsd", 1.0)])
def test_config_forms_agree(kind, beta):
  x = _inputs(3)
  args = {k: x[k] for k in x}

  def run(**cfg):
    return distillation_loss(
      DivergenceConfig(kind=kind, beta=beta, temperature=0.9, is_clip=2.0, chunk_size=4, **cfg), **args
    )

  full = run(form="full")
  for other in (run(form="chunked"), run(form="topk", top_k=V)):
    np.testing.assert_allclose(other[0], full[0], rtol=1e-5)
    assert other[1] == full[1] == x["mask"].sum()
  ref = _logits_loss(
    x, kind=kind, beta=beta, temperature=0.9, tokens=x["tokens"], behaviour_logprob=x["behaviour_logprob"], is_clip=2.0
  )
  np.testing.assert_allclose(full[0], ref, rtol=1e-6)


def test_config_sampled_form_uses_token_logprobs():
  x = _inputs(4)
  cfg = DivergenceConfig(kind="reverse_kl", form="sampled", temperature=1.1, chunk_size=4, is_clip=2.0)
  got = distillation_loss(cfg, **x)
  ls, lt = (
    token_logprobs(project_to_logits(x[f"{side}_hidden"], x[f"{side}_unembedding"]), x["tokens"], temperature=1.1)
    for side in ("student", "teacher")
  )
  ref = sampled_token_divergence(
    ls, lt, x["mask"], kind="reverse_kl", behaviour_logprob=x["behaviour_logprob"], is_clip=2.0
  )
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_config_without_clip_ignores_behaviour_and_with_clip_requires_it():
  x = _inputs(5)
  plain = distillation_loss(DivergenceConfig(form="full"), **x)
  ref = _logits_loss(x, kind="jsd", beta=0.5)
  np.testing.assert_allclose(plain[0], ref, rtol=1e-6)
  no_behaviour = {k: v for k, v in x.items() if k != "behaviour_logprob"}
  with pytest.raises(ValueError, match="behaviour_logprob"):
    distillation_loss(DivergenceConfig(is_clip=math.inf), **no_behaviour)


@pytest.mark.parametrize(
  "fields,bad",
  [
    (dict(kind="kl"), "kind"),
    (dict(beta=-0.1), "beta"),
    (dict(form="dense"), "form"),
    (dict(form="topk"), "top_k"),
    (dict(form="topk", top_k=0), "top_k"),
    (dict(form="chunked", top_k=5), "top_k"),
    (dict(temperature=0.0), "temperature"),
    (dict(is_clip=0.0), "is_clip"),
    (dict(chunk_size=0), "chunk_size"),
  ],
)
def test_config_rejects_bad_fields_by_name(fields, bad):
  with pytest.raises(ValueError, match=f"DivergenceConfig.{bad}"):
    DivergenceConfig(**fields)


def test_config_is_frozen():
  cfg = DivergenceConfig()
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.kind = "reverse_kl"
