"""Export to Hugging Face format and clear errors on bad checkpoints."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import load_file, save_file
from test_data_tokenizer import build_hf_tokenizer_dir

from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.model import Transformer, hf, hf_config, presets
from ssd_jax.pipeline import model_io


def _random_norm_scales(model):
  """Non-trivial norm scales so a mixed-up norm would show in the logits."""
  rng = np.random.default_rng(3)
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param) and path[-1] == "scale":
      var[...] = jnp.asarray(1 + 0.1 * rng.standard_normal(var.shape), var.dtype)


@pytest.mark.parametrize("preset", ["tiny_qwen3", "tiny_llama3"])
def test_save_hf_round_trip_through_transformers(tmp_path, preset):
  cfg = presets.get(preset, dtype="float32", param_dtype="float32")
  model = Transformer(cfg, rngs=nnx.Rngs(7))
  _random_norm_scales(model)
  hf.save_hf(model, cfg, str(tmp_path))
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
  assert type(hf_model).__name__ == ("Qwen3ForCausalLM" if cfg.qk_norm else "LlamaForCausalLM")

  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 80)).astype(np.int32)
  positions = np.broadcast_to(np.arange(80), (2, 80)).astype(np.int32)
  ours, _ = model(jnp.asarray(tokens), jnp.asarray(positions))
  with torch.no_grad():
    ref = hf_model(input_ids=torch.tensor(tokens), position_ids=torch.tensor(positions)).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-4, rtol=0)

  reloaded, cfg2 = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  assert cfg2 == cfg
  again, _ = reloaded(jnp.asarray(tokens), jnp.asarray(positions))
  np.testing.assert_array_equal(np.asarray(again), np.asarray(ours))


def test_load_hf_sharded_index(tmp_path):
  cfg = presets.get("tiny_llama3", dtype="float32", param_dtype="float32")
  model = Transformer(cfg, rngs=nnx.Rngs(1))
  hf.save_hf(model, cfg, str(tmp_path))
  tensors = load_file(str(tmp_path / "model.safetensors"))
  (tmp_path / "model.safetensors").unlink()
  names = sorted(tensors)
  weight_map = {}
  for i, part in enumerate((names[::2], names[1::2])):
    file = f"model-0000{i + 1}-of-00002.safetensors"
    save_file({n: tensors[n] for n in part}, str(tmp_path / file))
    weight_map.update({n: file for n in part})
  (tmp_path / hf.SAFETENSORS_INDEX).write_text(json.dumps({"weight_map": weight_map}))
  loaded, _ = hf.load_hf(str(tmp_path), dtype="float32", param_dtype="float32")
  tokens = jnp.arange(10, dtype=jnp.int32)[None]
  np.testing.assert_array_equal(np.asarray(loaded(tokens, tokens)[0]), np.asarray(model(tokens, tokens)[0]))


def test_unsupported_architecture_is_named():
  with pytest.raises(ValueError, match="MistralForCausalLM"):
    hf_config.config_from_hf({"architectures": ["MistralForCausalLM"], "model_type": "mistral"})


def test_shape_mismatch_and_missing_tensor_are_named(tmp_path):
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  hf.save_hf(Transformer(cfg, rngs=nnx.Rngs(0)), cfg, str(tmp_path))
  tensors = load_file(str(tmp_path / "model.safetensors"))
  name = "model.layers.1.mlp.up_proj.weight"
  tensors[name] = tensors[name][:-1]
  save_file(tensors, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj\.weight.*shape"):
    hf.load_hf(str(tmp_path), dtype="float32")
  del tensors[name]
  save_file(tensors, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"):
    hf.load_hf(str(tmp_path), dtype="float32")


def test_export_writes_generation_config_with_every_stop_id(tmp_path):
  tokenizer_dir = build_hf_tokenizer_dir(tmp_path / "tok", "qwen3")
  with open(tokenizer_dir + "/generation_config.json", "w") as f:  # A checkpoint's own defaults survive.
    json.dump({"eos_token_id": 0, "temperature": 0.7, "top_p": 0.8}, f)
  tokenizer = load_tokenizer(tokenizer_dir)
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  out = str(tmp_path / "exported")
  model_io.export_hf(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0))), cfg, out, tokenizer_dir)

  generation = transformers.GenerationConfig.from_pretrained(out)
  assert generation.eos_token_id[0] == tokenizer.eos_id == tokenizer.token_to_id("<|im_end|>")
  assert set(generation.eos_token_id) == set(tokenizer.stop_ids) and 0 in tokenizer.stop_ids
  assert generation.pad_token_id == tokenizer.pad_id and (generation.temperature, generation.top_p) == (0.7, 0.8)
  config = transformers.AutoConfig.from_pretrained(out)
  assert config.eos_token_id == generation.eos_token_id and config.pad_token_id == tokenizer.pad_id
  assert load_tokenizer(out).stop_ids == tokenizer.stop_ids
