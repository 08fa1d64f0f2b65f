"""Qwen3-MoE logits and greedy generation against Hugging Face transformers on tiny random checkpoints."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from jax.sharding import PartitionSpec as P
from safetensors.numpy import load_file

from ssd_jax import sharding
from ssd_jax.model import hf, hf_config
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams


def hf_moe_model(seed: int = 0, **overrides):
  """A tiny random Qwen3MoeForCausalLM with non-trivial norm scales."""
  config = dict(
    vocab_size=256,
    hidden_size=48,
    intermediate_size=80,
    moe_intermediate_size=24,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    num_experts=8,
    num_experts_per_tok=3,
    max_position_embeddings=512,
    rope_theta=10_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
  )
  config.update(overrides)
  torch.manual_seed(seed)
  model = transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(**config)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
      elif "mlp.gate.weight" in name:  # Sharper routing than init_std 0.02, so top-k choices are clear.
        p.copy_(torch.randn_like(p))
  return model


def _left_padded_batch(vocab: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  batch, length = 3, 24
  tokens = rng.integers(0, vocab, (batch, length)).astype(np.int32)
  mask = np.ones((batch, length), np.int64)
  mask[1, :9] = 0
  mask[2, :20] = 0
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  return tokens, positions, mask


@pytest.mark.parametrize(
  "overrides",
  [
    dict(norm_topk_prob=False),
    dict(norm_topk_prob=True),
    dict(norm_topk_prob=True, mlp_only_layers=[1]),
    dict(decoder_sparse_step=2, tie_word_embeddings=True),
  ],
  ids=["no_norm_topk", "norm_topk", "mlp_only_layer", "sparse_step_2"],
)
def test_moe_logits_match_transformers_left_padded(tmp_path, overrides):
  hf_model = hf_moe_model(**overrides)
  hf_model.save_pretrained(tmp_path)
  model, cfg = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  assert cfg.num_experts == 8 and cfg.norm_topk_prob == overrides.get("norm_topk_prob", False)
  kinds = [cfg.is_moe_layer(i) for i in range(cfg.num_layers)]
  assert kinds == [type(layer.mlp).__name__ == "Qwen3MoeSparseMoeBlock" for layer in hf_model.model.layers]
  assert any(kinds)

  tokens, positions, mask = _left_padded_batch(cfg.vocab_size)
  ours, _ = model(jnp.asarray(tokens), jnp.asarray(positions), segment_ids=jnp.asarray(mask, jnp.int32))
  with torch.no_grad():
    ref = hf_model(
      input_ids=torch.tensor(tokens), position_ids=torch.tensor(positions), attention_mask=torch.tensor(mask)
    ).logits.numpy()
  valid = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(ours)[valid], ref[valid], atol=1e-4, rtol=0)


def test_export_round_trip_is_bit_identical(tmp_path):
  hf_model = hf_moe_model(seed=4, norm_topk_prob=True, mlp_only_layers=[0])
  hf_model.save_pretrained(tmp_path / "hf")
  model, cfg = hf.load_hf(str(tmp_path / "hf"), dtype="float32", param_dtype="float32")
  hf.save_hf(model, cfg, str(tmp_path / "ours"))
  original = load_file(str(tmp_path / "hf" / "model.safetensors"))
  exported = load_file(str(tmp_path / "ours" / "model.safetensors"))
  assert sorted(exported) == sorted(original)
  for name, tensor in original.items():
    np.testing.assert_array_equal(exported[name], tensor, err_msg=name)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "ours"), dtype=torch.float32)
  assert type(reloaded).__name__ == "Qwen3MoeForCausalLM"
  for key in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob", "mlp_only_layers"):
    assert getattr(reloaded.config, key) == getattr(hf_model.config, key), key
  again, cfg2 = hf.load_hf(str(tmp_path / "ours"), dtype="float32", param_dtype="float32")
  assert cfg2 == cfg


def test_sharded_scanned_load_equals_plain(tmp_path):
  hf_model = hf_moe_model(seed=5)
  hf_model.save_pretrained(tmp_path)
  plain, _ = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  mesh = sharding.make_mesh({"fsdp": 2, "expert": 2, "tensor": 2})
  stacked, cfg = hf.load_hf(str(tmp_path), mesh=mesh, dtype="float32", param_dtype="float32", scan_layers=True)
  gate = nnx.state(stacked.layers)["mlp"]["gate_proj"].get_value()
  assert gate.shape == (cfg.num_layers, 8, 48, 24)
  assert gate.sharding.spec == P(None, "expert", "fsdp", "tensor")
  want = np.stack([np.asarray(plain.layers[i].mlp.gate_proj[...]) for i in range(cfg.num_layers)])
  np.testing.assert_array_equal(np.asarray(gate), want)
  with pytest.raises(ValueError, match="scan_layers needs every layer alike"):
    hf_config.config_from_hf(hf_model.config.to_dict() | {"mlp_only_layers": [1]}, scan_layers=True)


def test_greedy_generation_matches_transformers_through_the_sampler(tmp_path):
  hf_model = hf_moe_model(seed=6, norm_topk_prob=True, mlp_only_layers=[2], pad_token_id=0)
  hf_model.save_pretrained(tmp_path)
  model, _ = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  graphdef, state = nnx.split(model)
  prompts = [[5, 17, 200, 42, 9, 77, 1], [250, 3], [99, 100, 101, 102]]
  new_tokens = 8
  ours = Sampler(graphdef, max_len=32, batch_size=4).generate(
    state, prompts, SamplingParams(temperature=0.0), max_new_tokens=new_tokens, progress=False
  )
  width = max(map(len, prompts))
  ids = np.zeros((len(prompts), width), np.int64)
  mask = np.zeros_like(ids)
  for i, prompt in enumerate(prompts):
    ids[i, width - len(prompt) :], mask[i, width - len(prompt) :] = prompt, 1
  with torch.no_grad():
    ref = hf_model.generate(
      input_ids=torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      do_sample=False,
      max_new_tokens=new_tokens,
      min_new_tokens=new_tokens,
      pad_token_id=0,
    )
  assert [g.token_ids.tolist() for g in ours] == ref[:, width:].numpy().tolist()


@pytest.mark.slow
def test_expert_parallel_sampler_equals_one_device(tmp_path):
  hf_model = hf_moe_model(seed=7, norm_topk_prob=True)
  hf_model.save_pretrained(tmp_path)
  model, _ = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  graphdef, state = nnx.split(model)
  prompts = [[5, 17, 200, 42, 9], [250, 3], [99, 100, 101, 102], [7], [8, 9, 10], [11, 12], [13], [14, 15, 16, 17]]
  mesh = sharding.make_mesh({"data": 2, "expert": 4})
  greedy = SamplingParams(temperature=0.0)
  want = Sampler(graphdef, max_len=24, batch_size=8).generate(state, prompts, greedy, max_new_tokens=6, progress=False)
  got = Sampler(graphdef, mesh=mesh, max_len=24, batch_size=8).generate(
    sharding.shard_state(state, mesh), prompts, greedy, max_new_tokens=6, progress=False
  )
  assert [g.token_ids.tolist() for g in got] == [g.token_ids.tolist() for g in want]
  for a, b in zip(got, want):
    np.testing.assert_allclose(a.logprob_raw, b.logprob_raw, atol=1e-4)
