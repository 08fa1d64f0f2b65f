"""GGUF import on small GGUF files written here, checked against transformers' GGUF loader, and its errors.

The files are written the way llama.cpp's converter writes a Llama: query/key rows permuted for pairwise
RoPE, float and quantized tensors mixed, the tokenizer as metadata. Needs the `real` extra (gguf, accelerate).
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

for _module in ("gguf", "accelerate", "torch", "transformers"):
  pytest.importorskip(_module, reason=f"needs the `real` extra ({_module}): pip install -e '.[test,real]'")

import gguf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from test_data_tokenizer import CORPUS, build_hf_tokenizer_dir  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from ssd_jax import convert  # noqa: E402
from ssd_jax.data.tokenizer import load_tokenizer  # noqa: E402
from ssd_jax.model import gguf_import, hf  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM, LAYERS = 4, 2, 16, 2
Q = gguf.GGMLQuantizationType
# llama.cpp name suffix -> (transformers name suffix, storage type in the test file).
LAYER_TENSORS = {
  "attn_norm.weight": ("input_layernorm.weight", Q.F32),
  "attn_q.weight": ("self_attn.q_proj.weight", Q.F32),
  "attn_k.weight": ("self_attn.k_proj.weight", Q.F16),
  "attn_v.weight": ("self_attn.v_proj.weight", Q.Q8_0),
  "attn_output.weight": ("self_attn.o_proj.weight", Q.Q4_1),
  "ffn_norm.weight": ("post_attention_layernorm.weight", Q.F32),
  "ffn_gate.weight": ("mlp.gate_proj.weight", Q.Q4_1),
  "ffn_up.weight": ("mlp.up_proj.weight", Q.Q8_0),
  "ffn_down.weight": ("mlp.down_proj.weight", Q.Q4_0),
}


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's converter: each head's rows (2, pair) -> (pair, 2)."""
  return weight.reshape(heads, 2, weight.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def write_llama_gguf(path, tokenizer_dir, *, arch="llama", extra_tensor=None, tokenizer_model="gpt2"):
  """A random 2-layer Llama with the tokenizer of `tokenizer_dir`; returns the float transformers model."""
  raw = json.load(open(os.path.join(tokenizer_dir, "tokenizer.json")))
  backend = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
  vocab = backend.get_vocab(with_added_tokens=True)
  tokens = sorted(vocab, key=vocab.get)
  added = {t["content"]: t["special"] for t in raw["added_tokens"]}
  types = [(3 if added[t] else 4) if t in added else 1 for t in tokens]
  config = transformers.LlamaConfig(
    vocab_size=len(tokens),
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS,
    head_dim=HEAD_DIM,
    max_position_embeddings=256,
    rope_theta=10_000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    initializer_range=0.1,
  )
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1 + 0.1 * torch.randn_like(p))
  state = {k: v.numpy() for k, v in model.state_dict().items()}

  writer = gguf.GGUFWriter(str(path), arch)
  writer.add_block_count(LAYERS)
  writer.add_context_length(256)
  writer.add_embedding_length(64)
  writer.add_feed_forward_length(96)
  writer.add_head_count(HEADS)
  writer.add_head_count_kv(KV_HEADS)
  writer.add_rope_dimension_count(HEAD_DIM)
  writer.add_rope_freq_base(10_000.0)
  writer.add_layer_norm_rms_eps(1e-5)
  writer.add_vocab_size(len(tokens))
  writer.add_tokenizer_model(tokenizer_model)
  writer.add_tokenizer_pre("gpt-2")
  writer.add_token_list(tokens)
  writer.add_token_types(types)
  writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in raw["model"]["merges"]])
  writer.add_eos_token_id(vocab["<|im_end|>"])
  writer.add_pad_token_id(vocab["<|endoftext|>"])
  writer.add_chat_template(json.load(open(os.path.join(tokenizer_dir, "tokenizer_config.json")))["chat_template"])
  tensors = {  # name -> (array to write, its type)
    "token_embd.weight": (state["model.embed_tokens.weight"], Q.F16),
    "output_norm.weight": (state["model.norm.weight"], Q.F32),
    "output.weight": (state["lm_head.weight"], Q.Q8_0),
  }
  for layer in range(LAYERS):
    for gguf_name, (hf_name, qtype) in LAYER_TENSORS.items():
      weight = state[f"model.layers.{layer}.{hf_name}"]
      if gguf_name in ("attn_q.weight", "attn_k.weight"):
        weight = llama_cpp_permute(weight, HEADS if gguf_name == "attn_q.weight" else KV_HEADS)
      tensors[f"blk.{layer}.{gguf_name}"] = (weight, qtype)
  for name, (value, qtype) in tensors.items():
    if qtype in (Q.F32, Q.F16):
      writer.add_tensor(name, value.astype(np.float32 if qtype == Q.F32 else np.float16))
    else:
      writer.add_tensor(name, gguf.quantize(value.astype(np.float32), qtype), raw_dtype=qtype)
  for name, value in (extra_tensor or {}).items():
    writer.add_tensor(name, value)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return model


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  return build_hf_tokenizer_dir(tmp_path_factory.mktemp("tok"), "qwen3")


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory, tokenizer_dir):
  path = tmp_path_factory.mktemp("gguf") / "small.gguf"
  model = write_llama_gguf(path, tokenizer_dir)
  out = str(tmp_path_factory.mktemp("converted") / "hf")
  assert convert.convert_gguf(str(path), out) == str(path)
  return str(path), model, out


def test_unpermute_inverts_llama_cpp_and_matches_transformers():
  weight = np.random.default_rng(0).standard_normal((KV_HEADS * HEAD_DIM, 8)).astype(np.float32)
  permuted = llama_cpp_permute(weight, KV_HEADS)
  assert not np.array_equal(permuted, weight)
  np.testing.assert_array_equal(gguf_import.unpermute_rope_rows(permuted, KV_HEADS), weight)
  from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor as processor  # noqa: N813

  np.testing.assert_array_equal(processor()._reverse_permute_weights(permuted, HEADS, KV_HEADS), weight)


def test_converted_logits_match_transformers_reading_the_gguf(small_gguf):
  path, original, out = small_gguf
  directory, file = os.path.split(path)
  reference = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=torch.float32).eval()
  model, cfg = hf.load_hf(out, dtype="float32", param_dtype="float32")
  assert not cfg.tie_embeddings and cfg.num_kv_heads == KV_HEADS and cfg.rms_norm_eps == pytest.approx(1e-5)
  # Float tensors come back exactly (the query rows unpermuted), quantized ones as transformers decodes them.
  ref_state = reference.state_dict()
  exact = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "input_layernorm.weight")
  tensors = hf._SafetensorsReader(out)
  for name, value in ref_state.items():
    np.testing.assert_array_equal(tensors.slice(name)[:], value.numpy(), err_msg=name)
    if name.endswith(exact):
      expected = original.state_dict()[name].numpy()
      np.testing.assert_array_equal(
        value.numpy(), expected.astype(np.float16).astype(np.float32) if "k_proj" in name else expected
      )

  tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, (3, 24))
  mask = np.ones_like(tokens)
  mask[1, :7], mask[2, :20] = 0, 0  # Left padding.
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  ours, _ = model(jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32), segment_ids=jnp.asarray(mask))
  with torch.no_grad():
    ref = reference(
      input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
    ).logits.numpy()
  valid = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(ours)[valid], ref[valid], atol=1e-4, rtol=0)


def test_converted_tokenizer_files(small_gguf, tokenizer_dir):
  path, _, out = small_gguf
  ours, original = load_tokenizer(out), load_tokenizer(tokenizer_dir)
  directory, file = os.path.split(path)
  reference = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=file)
  for text in CORPUS + ["<|im_start|>user\n<think>hi</think><|im_end|>\n", "  spaces  "]:
    ids = ours.encode(text)
    assert ids == original.encode(text) == reference.encode(text, add_special_tokens=False)
    assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
  chat = [{"role": "user", "content": "hi"}]
  assert ours.apply_chat_template(chat) == original.apply_chat_template(chat)
  generation = json.load(open(os.path.join(out, "generation_config.json")))
  assert generation["eos_token_id"][0] == ours.eos_id and set(generation["eos_token_id"]) == set(ours.stop_ids)
  assert generation["pad_token_id"] == ours.pad_id == ours.token_to_id("<|endoftext|>")


def _run_cli(capsys, *args):
  with pytest.raises(SystemExit) as exit_info:
    convert.main(["gguf", *args])
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2 and "\n" not in err
  return err


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, tokenizer_dir, capsys):
  out = str(tmp_path / "out")
  assert "not-a-model" in _run_cli(capsys, "--in=not-a-model", f"--out={out}")
  (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
  assert "not a readable GGUF" in _run_cli(capsys, f"--in={tmp_path / 'junk.gguf'}", f"--out={out}")

  write_llama_gguf(tmp_path / "mamba.gguf", tokenizer_dir, arch="mamba")
  assert "'mamba' is not supported" in _run_cli(capsys, f"--in={tmp_path / 'mamba.gguf'}", f"--out={out}")
  write_llama_gguf(tmp_path / "spm.gguf", tokenizer_dir, tokenizer_model="llama")
  assert "tokenizer model 'llama'" in _run_cli(capsys, f"--in={tmp_path / 'spm.gguf'}", f"--out={out}")
  wide = {"blk.0.extra.weight": np.zeros(4, np.float64)}
  write_llama_gguf(tmp_path / "f64.gguf", tokenizer_dir, extra_tensor=wide)
  err = _run_cli(capsys, f"--in={tmp_path / 'f64.gguf'}", f"--out={out}")
  assert "'blk.0.extra.weight'" in err and "F64" in err
  assert not os.path.exists(out) and not os.path.exists(out + ".partial")


def test_bfloat16_output_is_the_float32_weights_rounded(small_gguf, tmp_path):
  path, _, out = small_gguf
  convert.convert_gguf(path, str(tmp_path / "bf16"), dtype="bfloat16")
  half, full = hf._SafetensorsReader(str(tmp_path / "bf16")), hf._SafetensorsReader(out)
  name = "model.layers.1.mlp.gate_proj.weight"
  np.testing.assert_array_equal(half.slice(name)[:], full.slice(name)[:].astype(jnp.bfloat16))
  _, cfg = hf.load_hf(str(tmp_path / "bf16"))
  assert cfg.param_dtype == "bfloat16"


def test_an_earlier_conversion_is_replaced_and_a_failed_rename_leaves_no_partial(
  small_gguf, tmp_path, monkeypatch, capsys
):
  path, _, _ = small_gguf
  out = tmp_path / "hf"
  convert.convert_gguf(path, str(out))
  (out / "config.json").write_text("{}")
  convert.convert_gguf(path, str(out))  # Holding exactly what a conversion writes, it is replaced.
  assert (
    sorted(os.listdir(out)) == sorted(convert.CONVERTED_FILES) and "vocab_size" in (out / "config.json").read_text()
  )

  def failing_replace(source, target):
    raise OSError(f"[Errno 16] Device or resource busy: {source!r} -> {target!r}")

  monkeypatch.setattr(convert.os, "replace", failing_replace)
  assert "Device or resource busy" in _run_cli(capsys, f"--in={path}", f"--out={tmp_path / 'other'}")
  assert sorted(os.listdir(tmp_path)) == ["hf"]  # The converted files do not stay behind under .partial.
