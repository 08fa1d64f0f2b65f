"""Task tokenizer: deterministic build, HF-loadable, exact round trip, chat template, token budget."""

import json

import jinja2
import pytest
from transformers import PreTrainedTokenizerFast

from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.tasks import builtin, tokenizer_assets

TOKEN_BUDGET = 160


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  return tokenizer_assets.build_task_tokenizer(tmp_path_factory.mktemp("task_tokenizer"), seed=0)


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer_dir):
  config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
  tokenizer = PreTrainedTokenizerFast(
    tokenizer_file=str(tokenizer_dir / "tokenizer.json"), eos_token=config["eos_token"], pad_token=config["pad_token"]
  )
  tokenizer.chat_template = config["chat_template"]
  return tokenizer


def all_examples():
  """Every split's problems, each with every known answer, right or wrong."""
  for split in builtin.SPLITS:
    for problem in builtin.builtin_problems(split, 130, seed=5):
      instance = builtin.task_instance(problem)
      for code in instance.solutions + instance.wrong_solutions:
        yield problem.question, builtin.render_answer(code)


def test_build_is_deterministic(tokenizer_dir, tmp_path):
  again = tokenizer_assets.build_task_tokenizer(tmp_path / "again", seed=0)
  for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    assert (again / name).read_bytes() == (tokenizer_dir / name).read_bytes()


def test_vocabulary_and_special_tokens(hf_tokenizer, tokenizer_dir):
  assert len(hf_tokenizer) == tokenizer_assets.DEFAULT_VOCAB_SIZE
  ids = hf_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
  assert ids == [0, 1, 2]
  assert hf_tokenizer.eos_token_id == 2 and hf_tokenizer.pad_token_id == 0
  loaded = load_tokenizer(tokenizer_dir)
  assert (loaded.eos_id, loaded.pad_id, loaded.vocab_size) == (2, 0, tokenizer_assets.DEFAULT_VOCAB_SIZE)
  assert 2 in loaded.stop_ids
  # The special tokens are single ids inside text, not spelled out in bytes.
  assert hf_tokenizer.encode("<|im_start|>user\n", add_special_tokens=False)[0] == 1


def test_round_trip_is_exact(hf_tokenizer):
  for question, answer in all_examples():
    text = tokenizer_assets.render_example(question, answer)
    ids = hf_tokenizer.encode(text, add_special_tokens=False)
    assert hf_tokenizer.decode(ids) == text
  for text in ("Ünïcode ✓ and tabs\t", "    deep\n        indent", ""):
    assert hf_tokenizer.decode(hf_tokenizer.encode(text, add_special_tokens=False)) == text


def test_chat_template_matches_qwen_layout(hf_tokenizer):
  messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
  rendered = hf_tokenizer.apply_chat_template(messages, tokenize=False)
  system = f"<|im_start|>system\n{tokenizer_assets.SYSTEM_PROMPT}<|im_end|>\n"
  assert rendered == system + "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n"
  prompt = hf_tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
  assert prompt == system + "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
  own_system = [{"role": "system", "content": "S"}] + messages[:1]
  assert hf_tokenizer.apply_chat_template(own_system, tokenize=False) == (
    "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n"
  )
  # Our renderer agrees with transformers' and with a bare jinja2 environment.
  assert tokenizer_assets.render_example("Q?", "A.") == rendered
  bare = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(tokenizer_assets.CHAT_TEMPLATE)
  assert bare.render(messages=messages, add_generation_prompt=False) == rendered


def test_longest_example_fits_the_budget(hf_tokenizer):
  lengths = []
  for question, answer in all_examples():
    ids = hf_tokenizer.apply_chat_template(
      [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
      tokenize=True,
      return_dict=False,
    )
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    lengths.append(len(ids))
  assert 40 < max(lengths) < TOKEN_BUDGET


def test_too_small_vocabulary_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="vocab_size"):
    tokenizer_assets.build_task_tokenizer(tmp_path, vocab_size=100)


def test_a_build_killed_midway_leaves_no_tokenizer_json(tmp_path, monkeypatch):
  # The pretrain stage takes tokenizer.json as the sign of a complete directory: it must come last, whole.
  monkeypatch.setattr(tokenizer_assets, "training_texts", lambda seed: ["def f(x):\n  return x + 1\n"] * 4)

  def killed(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(tokenizer_assets.json, "dumps", killed)
  with pytest.raises(KeyboardInterrupt):
    tokenizer_assets.build_task_tokenizer(tmp_path, vocab_size=300)
  assert not (tmp_path / "tokenizer.json").exists()
