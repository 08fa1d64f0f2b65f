"""Test helpers for the data-record tests: a byte-level chat tokenizer and record factories."""

from __future__ import annotations

import re

import numpy as np

from ssd_jax.data.sample_record import SampleRecord

PAD, EOS, IM_START, IM_END = 0, 1, 2, 3
_SPECIALS = {"<pad>": PAD, "<eos>": EOS, "<|im_start|>": IM_START, "<|im_end|>": IM_END}
_SPECIAL_RE = re.compile("|".join(re.escape(s) for s in _SPECIALS))
_OFFSET = len(_SPECIALS)


class ByteChatTokenizer:
  """UTF-8 bytes shifted by 4, four special tokens, and a ChatML-like template."""

  eos_id = EOS
  pad_id = PAD
  bos_id = None
  stop_ids = (EOS, IM_END)
  vocab_size = 256 + _OFFSET
  thinking_opener = ""

  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    del add_special_tokens
    ids, start = [], 0
    for match in _SPECIAL_RE.finditer(text):
      ids += [b + _OFFSET for b in text[start : match.start()].encode("utf-8")]
      ids.append(_SPECIALS[match.group()])
      start = match.end()
    return ids + [b + _OFFSET for b in text[start:].encode("utf-8")]

  def encode_continuation(self, text: str) -> list[int]:
    return self.encode(text)  # bytes mark no start of text

  def decode(self, ids) -> str:
    names = {v: k for k, v in _SPECIALS.items()}
    out, buf = [], bytearray()
    for i in ids:
      if i in names:
        out.append(buf.decode("utf-8") + names[i])
        buf = bytearray()
      else:
        buf.append(i - _OFFSET)
    return "".join(out) + buf.decode("utf-8")

  def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def make_record(
  task: int, sample: int = 0, completion: str | None = None, finish_reason: str = "stop", **overrides
) -> SampleRecord:
  """A deterministic record whose content depends on (task, sample); its ids are the completion's bytes
  (`ByteChatTokenizer`), then `<|im_end|>` when it stopped."""
  rng = np.random.default_rng(task * 1000 + sample)
  completion = completion if completion is not None else (f"def f{task}():\n    return {task * 7 + sample}\n")
  completion_ids = ByteChatTokenizer().encode_continuation(completion) + ([IM_END] if finish_reason == "stop" else [])
  n = len(completion_ids)
  fields = dict(
    task_id=f"task-{task}",
    sample_index=sample,
    prompt_ids=rng.integers(4, 260, size=5).tolist(),
    completion_text=completion,
    completion_ids=completion_ids,
    finish_reason=finish_reason,
    logprob_raw=np.log(rng.uniform(0.01, 1, size=n)).astype(np.float32).tolist(),
    logprob_sampled=np.log(rng.uniform(0.01, 1, size=n)).tolist(),
    temperature=1.6,
    top_k=20,
    top_p=0.8,
    min_p=0.0,
    max_new_tokens=64,
    seed=1234 + task,
    source_checkpoint="ckpt/step_0",
    prompt_messages=[{"role": "user", "content": f"Write f{task}, ü {'x' * (task % 5)}"}],
    created_at="2025-01-01T00:00:00+00:00",
    extra={"difficulty": task % 3},
  )
  fields.update(overrides)
  return SampleRecord(**fields)


def stored_record(task_id: str, completion_text: str, prompt_ids, tokenizer=None, **overrides) -> SampleRecord:
  """A record as synthesis stores one, with placeholder values in the fields a test does not read.

  With `tokenizer`, the completion ids are its encoding of the text, then the end-of-sequence token.
  """
  completion_ids = [3] if tokenizer is None else [*tokenizer.encode_continuation(completion_text), tokenizer.eos_id]
  fields = dict(
    task_id=task_id,
    sample_index=0,
    prompt_ids=list(prompt_ids),
    completion_text=completion_text,
    completion_ids=completion_ids,
    finish_reason="stop",
    logprob_raw=[-1.0] * len(completion_ids),
    logprob_sampled=[-0.5] * len(completion_ids),
    temperature=1.6,
    top_k=20,
    top_p=0.8,
    min_p=0.0,
    max_new_tokens=64,
    seed=0,
    source_checkpoint="base",
  )
  fields.update(overrides)
  return SampleRecord(**fields)
