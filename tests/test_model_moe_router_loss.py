"""The router load-balancing loss: value against transformers and numpy, gradient against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from test_model_moe_parity import hf_moe_model
from transformers.models.qwen3_moe import modeling_qwen3_moe

from ssd_jax.model import Transformer, hf, presets
from ssd_jax.model.router_stats import (
  capture_router_stats,
  expert_load,
  load_balancing_loss,
  router_stats,
)
from ssd_jax.train.sft_step import sft_loss

LAYERS, TOKENS, EXPERTS, TOP_K = 3, 20, 6, 2


def _numpy_loss_and_grad(logits: np.ndarray, mask: np.ndarray):
  """HF's formula in float64, and its gradient in the logits (top-k counts are piecewise constant)."""
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # [layers, tokens, experts]
  chosen = np.argsort(-p, axis=-1)[..., :TOP_K]
  counts = np.zeros_like(p)
  np.put_along_axis(counts, chosen, 1.0, axis=-1)
  w = mask[None, :, None].astype(np.float64)
  n = LAYERS * mask.sum()
  f = (counts * w).sum((0, 1)) / n
  big_p = (p * w).sum((0, 1)) / n
  loss = EXPERTS * np.sum(f * big_p)
  # d loss / d z_j = (E / N) * p_j * (f_j - sum_e f_e p_e), for valid tokens.
  grad = EXPERTS / n * p * (f - (p * f).sum(-1, keepdims=True)) * w
  return loss, grad


def _our_loss(logits, mask):
  total = None
  for layer in logits:
    probs = jax.nn.softmax(layer)
    _, index = jax.lax.top_k(probs, TOP_K)
    stats = router_stats(probs, index, mask)
    total = stats if total is None else total + stats
  return load_balancing_loss(total)


@pytest.mark.parametrize("padded", [False, True])
def test_loss_value_and_gradient_against_numpy_and_transformers(padded):
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((LAYERS, TOKENS, EXPERTS)).astype(np.float32) * 2
  mask = np.ones(TOKENS, bool)
  if padded:
    mask[13:] = False
  loss, grad = jax.value_and_grad(_our_loss)(jnp.asarray(logits), jnp.asarray(mask))
  want_loss, want_grad = _numpy_loss_and_grad(logits.astype(np.float64), mask)
  np.testing.assert_allclose(float(loss), want_loss, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), want_grad, atol=1e-7, rtol=1e-4)
  hf_loss = modeling_qwen3_moe.load_balancing_loss_func(
    tuple(torch.tensor(layer) for layer in logits),
    EXPERTS,
    TOP_K,
    torch.tensor(mask[None].astype(np.int64)) if padded else None,
  )
  np.testing.assert_allclose(float(loss), float(hf_loss), rtol=1e-6)


def test_expert_load_statistics():
  probs = jnp.full((4, 3), 1 / 3)
  index = jnp.asarray([[0, 1], [0, 2], [0, 1], [0, 1]], jnp.int32)
  load = expert_load(router_stats(probs, index, jnp.asarray([True, True, True, False])))
  np.testing.assert_array_equal(np.asarray(load["tokens_per_expert"]), [3, 2, 1])
  np.testing.assert_allclose(float(load["max_over_mean"]), 1.5)


@pytest.mark.parametrize("layout", ["loop", "scan", "remat"])
def test_model_aux_loss_matches_transformers(tmp_path, layout):
  hf_model = hf_moe_model(seed=2, norm_topk_prob=True)
  hf_model.save_pretrained(tmp_path)
  overrides = {"loop": {}, "scan": {"scan_layers": True}, "remat": {"remat": "full"}}[layout]
  model, cfg = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32", **overrides)
  rng = np.random.default_rng(3)
  tokens = rng.integers(0, cfg.vocab_size, (2, 10)).astype(np.int32)
  mask = np.ones((2, 10), np.int64)
  mask[1, :4] = 0
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  graphdef, state = nnx.split(model)

  @jax.jit
  def aux(state):
    with capture_router_stats() as captured:
      nnx.merge(graphdef, state)(jnp.asarray(tokens), jnp.asarray(positions), segment_ids=jnp.asarray(mask, jnp.int32))
    return load_balancing_loss(captured.total())

  with torch.no_grad():
    out = hf_model(
      input_ids=torch.tensor(tokens),
      position_ids=torch.tensor(positions),
      attention_mask=torch.tensor(mask),
      output_router_logits=True,
    )
  np.testing.assert_allclose(float(aux(state)), float(out.aux_loss), rtol=1e-5)
  grads = jax.grad(aux)(state)
  router_grad = grads["layers"]["mlp"]["router"] if layout == "scan" else grads["layers"][0]["mlp"]["router"]
  assert float(jnp.abs(router_grad.get_value()).max()) > 0


def test_dense_model_records_nothing():
  model = Transformer(presets.get("tiny_qwen3", dtype="float32"), rngs=nnx.Rngs(0))
  with capture_router_stats() as captured:
    model(jnp.zeros((1, 4), jnp.int32), jnp.arange(4, dtype=jnp.int32)[None])
  assert captured.total() is None


@pytest.mark.parametrize("output_router_logits", [False, True])
def test_training_loss_adds_the_router_loss_where_transformers_does(tmp_path, output_router_logits):
  hf_model = hf_moe_model(seed=3, norm_topk_prob=True)
  hf_model.config.output_router_logits = output_router_logits  # Saved checkpoints carry False by default.
  hf_model.save_pretrained(tmp_path)
  model, cfg = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  assert cfg.router_aux_loss_coef == (hf_model.config.router_aux_loss_coef if output_router_logits else 0.0)
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 16)).astype(np.int32)
  batch = {
    "tokens": jnp.asarray(tokens),
    "targets": jnp.asarray(np.roll(tokens, -1, 1)),
    "loss_mask": jnp.asarray(np.arange(16) < 15, jnp.int32)[None].repeat(2, 0),
    "segment_ids": jnp.ones((2, 16), jnp.int32),
    "positions": jnp.broadcast_to(jnp.arange(16, dtype=jnp.int32), (2, 16)),
  }
  graphdef, state = nnx.split(model)
  loss_sum, count, _ = sft_loss(state, graphdef, batch, chunk_size=8)
  with torch.no_grad():
    want = hf_model(input_ids=torch.tensor(tokens, dtype=torch.long), labels=torch.tensor(tokens, dtype=torch.long))
  np.testing.assert_allclose(float(loss_sum / count), float(want.loss), rtol=1e-5)
  # Written back the same way: transformers reads the exported config.json to the same training loss.
  exported = hf.config_to_hf(cfg)
  assert exported["output_router_logits"] == output_router_logits
  # A checkpoint that trains without the loss keeps its weight for whoever switches output_router_logits on.
  assert exported["router_aux_loss_coef"] == hf_model.config.router_aux_loss_coef
