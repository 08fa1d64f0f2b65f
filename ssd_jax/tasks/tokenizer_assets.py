"""A tiny byte-level BPE tokenizer and Qwen-style chat template for the built-in task, built locally.

`build_task_tokenizer` writes the same files a Hugging Face checkpoint ships (`tokenizer.json`,
`tokenizer_config.json` with a Jinja `chat_template`, `special_tokens_map.json`), so the tiny model's
tokenizer loads through the same code path as a real one. Byte-level BPE round-trips any text.
"""

from __future__ import annotations

import json
import pathlib

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import ssd_jax.tasks.builtin as builtin
from ssd_jax.atomic_write import atomic_open
from ssd_jax.data.chat_template import render_chat_template

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
DEFAULT_VOCAB_SIZE = 512
SYSTEM_PROMPT = "Write one Python function."

# Qwen's layout: "<|im_start|>role\ncontent<|im_end|>\n" per message, a default system message when
# the conversation has none, and "<|im_start|>assistant\n" to open the reply.
CHAT_TEMPLATE = (
  "{%- if not messages or messages[0]['role'] != 'system' %}"
  "{{- '" + IM_START + "system\\n" + SYSTEM_PROMPT + IM_END + "\\n' }}"
  "{%- endif %}"
  "{%- for message in messages %}"
  "{{- '" + IM_START + "' + message['role'] + '\\n' + message['content'] + '" + IM_END + "\\n' }}"
  "{%- endfor %}"
  "{%- if add_generation_prompt %}"
  "{{- '" + IM_START + "assistant\\n' }}"
  "{%- endif %}"
)

# Problems drawn per split to train the merges; enough to see every family's wording and code.
_TRAINING_PROBLEMS_PER_SPLIT = 400


def render_example(question: str, answer: str | None = None) -> str:
  """A conversation as the model sees it: the prompt, and the answer with its end token when given."""
  messages = [{"role": "user", "content": question}]
  if answer is None:
    return render_chat_template(CHAT_TEMPLATE, messages, add_generation_prompt=True)
  messages.append({"role": "assistant", "content": answer})
  return render_chat_template(CHAT_TEMPLATE, messages, add_generation_prompt=False)


def training_texts(seed: int = 0) -> list[str]:
  """Rendered conversations of pretrain and synth problems with every known answer, right or wrong.

  The eval split is left out so that held-out statements do not shape the merges.
  """
  texts = []
  for split in ("pretrain", "synth"):
    for problem in builtin.builtin_problems(split, _TRAINING_PROBLEMS_PER_SPLIT, seed):
      instance = builtin.task_instance(problem)
      for code in instance.solutions + instance.wrong_solutions:
        texts.append(render_example(problem.question, builtin.render_answer(code)))
  return texts


def _tokenizer_config() -> dict:
  added = {
    str(i): {
      "content": token,
      "lstrip": False,
      "normalized": False,
      "rstrip": False,
      "single_word": False,
      "special": True,
    }
    for i, token in enumerate(SPECIAL_TOKENS)
  }
  return {
    "added_tokens_decoder": added,
    "additional_special_tokens": [IM_START, IM_END],
    "bos_token": None,
    "eos_token": IM_END,
    "pad_token": ENDOFTEXT,
    "unk_token": None,
    "chat_template": CHAT_TEMPLATE,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 1024,
    "tokenizer_class": "PreTrainedTokenizerFast",
  }


def build_task_tokenizer(
  out_dir: str | pathlib.Path, seed: int = 0, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> pathlib.Path:
  """Trains the task's byte-level BPE and writes a Hugging Face style tokenizer directory.

  Args:
    out_dir: directory to write into (created if missing; existing tokenizer files are replaced).
    seed: which problems the merges are trained on; the same seed gives identical files.
    vocab_size: total vocabulary: the 3 special tokens, 256 byte tokens, and the learned merges.

  Returns:
    The directory path. Special tokens get ids 0, 1, 2 (<|endoftext|>, <|im_start|>, <|im_end|>).
  """
  minimum = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
  if vocab_size < minimum:
    raise ValueError(f"vocab_size must be at least {minimum} (special tokens + 256 bytes), got {vocab_size}")
  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    min_frequency=2,
    special_tokens=list(SPECIAL_TOKENS),
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tokenizer.train_from_iterator(training_texts(seed), trainer=trainer)

  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  special_map = {"eos_token": IM_END, "pad_token": ENDOFTEXT, "additional_special_tokens": [IM_START, IM_END]}
  files = {
    "tokenizer_config.json": json.dumps(_tokenizer_config(), indent=2, ensure_ascii=False) + "\n",
    "special_tokens_map.json": json.dumps(special_map, indent=2, ensure_ascii=False) + "\n",
    # Last: the pretrain stage takes its presence as the sign the directory is complete.
    "tokenizer.json": tokenizer.to_str(pretty=True),
  }
  for name, text in files.items():
    with atomic_open(out / name, encoding="utf-8") as f:
      f.write(text)
  return out
