"""SFT examples: chat-formatted ids with a loss mask on the response only."""

import dataclasses

import numpy as np
import pytest
from data_records_fixtures import EOS, IM_END, ByteChatTokenizer, make_record

from ssd_jax.data.sft_examples import build_sft_example, end_of_turn_ids, sft_example_from_record

TOK = ByteChatTokenizer()
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 1 to x."}]
COMPLETION = "```python\ndef f(x):\n    return x + 1\n```"


def test_end_of_turn_is_the_templates_stop_token():
  # The template closes a turn with "<|im_end|>\n": the newline after the stop is not trained.
  assert end_of_turn_ids(TOK) == (IM_END,)


def test_end_of_turn_falls_back_to_eos():
  class NoEndTemplate(ByteChatTokenizer):
    def apply_chat_template(self, messages, add_generation_prompt=True):
      return "".join(f"{m['role']}: {m['content']}\n" for m in messages)

  assert end_of_turn_ids(NoEndTemplate()) == (EOS,)


def test_loss_mask_covers_exactly_the_response():
  example = build_sft_example(TOK, MESSAGES, COMPLETION, max_len=512)
  tokens, mask = example["tokens"], example["loss_mask"]
  assert tokens.dtype == np.int32 and mask.dtype == np.int32 and tokens.shape == mask.shape
  prompt_text = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd 1 to x.<|im_end|>\n<|im_start|>assistant\n"
  )
  n_prompt = len(TOK.encode(prompt_text))
  assert TOK.decode(tokens[:n_prompt]) == prompt_text
  assert TOK.decode(tokens[mask == 1]) == COMPLETION + "<|im_end|>"
  np.testing.assert_array_equal(mask, np.r_[np.zeros(n_prompt), np.ones(len(tokens) - n_prompt)])


def test_example_is_a_prefix_of_the_rendered_conversation():
  # Tokenising prompt and response separately agrees with tokenising the whole
  # conversation rendered with the assistant message (up to the text after the stop token).
  example = build_sft_example(TOK, MESSAGES, COMPLETION, max_len=512)
  full = TOK.encode(
    TOK.apply_chat_template(MESSAGES + [{"role": "assistant", "content": COMPLETION}], add_generation_prompt=False)
  )
  assert full[: len(example["tokens"])] == example["tokens"].tolist()
  assert TOK.decode(full[len(example["tokens"]) :]) == "\n"


def test_truncation_to_max_len():
  full = build_sft_example(TOK, MESSAGES, COMPLETION, max_len=10_000)
  cut = build_sft_example(TOK, MESSAGES, COMPLETION, max_len=70)
  np.testing.assert_array_equal(cut["tokens"], full["tokens"][:70])
  np.testing.assert_array_equal(cut["loss_mask"], full["loss_mask"][:70])
  prompt_only = build_sft_example(TOK, MESSAGES, COMPLETION, max_len=20)
  assert len(prompt_only["tokens"]) == 20 and not prompt_only["loss_mask"].any()
  with pytest.raises(ValueError, match="max_len"):
    build_sft_example(TOK, MESSAGES, COMPLETION, max_len=0)


def test_from_record_uses_finish_reason_and_prompt_text():
  stopped = sft_example_from_record(make_record(1, completion="x = 1"), 512, (IM_END,))
  assert stopped["tokens"][-1] == IM_END
  cut_off = sft_example_from_record(make_record(1, completion="x = 1", finish_reason="length"), 512, (IM_END,))
  assert TOK.decode(cut_off["tokens"][cut_off["loss_mask"] == 1]) == "x = 1"
  rendered = make_record(
    2, completion="y", prompt_messages=None, prompt_text="Q: go\nA: ", prompt_ids=TOK.encode("Q: go\nA: ")
  )
  example = sft_example_from_record(rendered, 512, (IM_END,))
  assert TOK.decode(example["tokens"]) == "Q: go\nA: y<|im_end|>"
  assert example["loss_mask"].tolist() == [0] * len("Q: go\nA: ") + [1, 1]


def test_from_record_trains_on_the_ids_the_sampler_drew():
  # Ids no encoder of the text gives: "é" sampled as its two bytes, then cut inside a character ("€" is 3 bytes).
  drawn = [*TOK.encode("caf"), *TOK.encode("é"), *TOK.encode("€")[:2]]
  logprobs = dict(logprob_raw=[-1.0] * len(drawn), logprob_sampled=[-1.0] * len(drawn))
  record = make_record(1, completion="café\ufffd", finish_reason="length", completion_ids=drawn, **logprobs)
  example = sft_example_from_record(record, 512, (IM_END,))
  assert example["tokens"][example["loss_mask"] == 1].tolist() == drawn
  # A sample that stopped on another stop token (EOS) ends as the template closes a turn.
  stopped = make_record(
    2, completion="x", completion_ids=[*TOK.encode("x"), EOS], **{k: v[:2] for k, v in logprobs.items()}
  )
  assert sft_example_from_record(stopped, 512, (IM_END,))["tokens"][-2:].tolist() == [*TOK.encode("x"), IM_END]


class DatedTemplate(ByteChatTokenizer):
  """A template that prints the date of the day it renders on, as Llama 3.2 / 3.3 templates do."""

  today = "01 Apr 2025"

  def apply_chat_template(self, messages, add_generation_prompt=True):
    return f"Today: {self.today}\n" + super().apply_chat_template(messages, add_generation_prompt)


def test_from_record_trains_on_the_prompt_ids_the_sampler_conditioned_on():
  tokenizer = DatedTemplate()
  record = make_record(1, completion="x = 1")
  sampled_prompt = tokenizer.encode(tokenizer.apply_chat_template(record.prompt_messages))
  record = dataclasses.replace(record, prompt_ids=sampled_prompt)
  tokenizer.today = "02 Apr 2025"  # SFT runs after midnight: rendering again would change the prompt.
  example = sft_example_from_record(record, 512, (IM_END,))
  n = len(sampled_prompt)
  assert example["tokens"][:n].tolist() == sampled_prompt
  assert TOK.decode(example["tokens"][n:]) == "x = 1<|im_end|>"
  assert example["loss_mask"].tolist() == [0] * n + [1] * (len(example["tokens"]) - n)


def test_from_record_without_prompt_ids_is_an_error():
  with pytest.raises(ValueError, match=r"sample record \('task-1', 0\) has no prompt_ids"):
    sft_example_from_record(make_record(1, prompt_ids=[]), 512, (IM_END,))
