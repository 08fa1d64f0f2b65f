"""Logits parity with Hugging Face transformers on tiny random checkpoints built locally."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from ssd_jax.model import hf

LLAMA3_SCALING = {
  "rope_type": "llama3",
  "factor": 8.0,
  "low_freq_factor": 1.0,
  "high_freq_factor": 4.0,
  "original_max_position_embeddings": 32,
}


def _hf_model(kind: str, tie: bool, seed: int = 0):
  common = dict(
    vocab_size=256,
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,  # head_dim != 48 / 4
    max_position_embeddings=512,
    tie_word_embeddings=tie,
  )
  if kind == "qwen3":
    config = transformers.Qwen3Config(rope_theta=10_000.0, rms_norm_eps=1e-6, **common)
    cls = transformers.Qwen3ForCausalLM
  else:
    config = transformers.LlamaConfig(rope_theta=500_000.0, rms_norm_eps=1e-5, rope_scaling=LLAMA3_SCALING, **common)
    cls = transformers.LlamaForCausalLM
  torch.manual_seed(seed)
  model = cls(config).eval()
  with torch.no_grad():  # Non-trivial norm scales so the norms are exercised.
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
  return model


def _hf_logits(model, tokens, positions, mask):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(tokens), position_ids=torch.tensor(positions), attention_mask=torch.tensor(mask))
  return out.logits.float().numpy()


@pytest.mark.parametrize("kind,tie", [("qwen3", True), ("qwen3", False), ("llama3", False), ("llama3", True)])
def test_logits_match_transformers_with_padding(tmp_path, kind, tie):
  hf_model = _hf_model(kind, tie)
  hf_model.save_pretrained(tmp_path)
  model, cfg = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  assert cfg.tie_embeddings == tie and cfg.qk_norm == (kind == "qwen3")
  assert (cfg.rope_scaling is not None) == (kind == "llama3")

  rng = np.random.default_rng(0)
  batch, length = 3, 40  # Positions beyond original_max_position_embeddings exercise llama3 scaling.
  tokens = rng.integers(0, 256, (batch, length)).astype(np.int32)
  lengths = np.array([40, 25, 7])
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)  # Right padding.
  positions = np.broadcast_to(np.arange(length), (batch, length)).astype(np.int32)
  ours, _ = model(jnp.asarray(tokens), jnp.asarray(positions), segment_ids=jnp.asarray(mask, jnp.int32))
  ours = np.asarray(ours)
  ref = _hf_logits(hf_model, tokens, positions, mask)
  assert np.isfinite(ours).all()
  valid = mask.astype(bool)
  np.testing.assert_allclose(ours[valid], ref[valid], atol=1e-4, rtol=0)


def test_left_padding_with_explicit_positions(tmp_path):
  hf_model = _hf_model("qwen3", tie=False, seed=1)
  hf_model.save_pretrained(tmp_path)
  model, _ = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  tokens = np.random.default_rng(1).integers(0, 256, (2, 12)).astype(np.int32)
  mask = np.ones((2, 12), np.int64)
  mask[1, :5] = 0  # Left padding: row 1 starts at position 0 on its first real token.
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  ours, _ = model(jnp.asarray(tokens), jnp.asarray(positions), segment_ids=jnp.asarray(mask, jnp.int32))
  ref = _hf_logits(hf_model, tokens, positions, mask)
  valid = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(ours)[valid], ref[valid], atol=1e-4, rtol=0)
