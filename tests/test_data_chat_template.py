"""Chat templates rendered exactly as transformers renders them, on locally built Qwen3- and Llama-3-style tokenizers."""

import json
import os

import pytest
from test_data_tokenizer import build_hf_tokenizer_dir

from ssd_jax.data import chat
from ssd_jax.data import chat_template as chat_template_lib
from ssd_jax.data import tokenizer as tokenizer_lib
from ssd_jax.data.problems import Problem

transformers = pytest.importorskip("transformers")

SYSTEM = {"role": "system", "content": "You are an expert Python programmer."}
USER = {"role": "user", "content": "Write `add(a, b)` & return a + b <fast>.\n"}
ASSISTANT = {"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n```"}
THINKING = {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nreturn a + b"}
CONVERSATIONS = [
  [USER],
  [SYSTEM, USER],
  [SYSTEM, USER, ASSISTANT],
  [SYSTEM, USER, ASSISTANT, {"role": "user", "content": "Now ünïcode: 名前 🙂"}],
  [USER, THINKING, {"role": "user", "content": "again"}, THINKING],
]
TOOLS = [
  {
    "type": "function",
    "function": {
      "name": "run_tests",
      "description": "Run <tests> & report ✓.",
      "parameters": {"type": "object", "properties": {}},
    },
  }
]


@pytest.fixture(
  scope="module",
  params=[("qwen3", False), ("llama3", False), ("qwen3", True)],
  ids=["qwen3", "llama3", "qwen3-jinja-file"],
)
def tokenizer_pair(request, tmp_path_factory):
  family, in_file = request.param
  directory = build_hf_tokenizer_dir(tmp_path_factory.mktemp(family), family, template_in_file=in_file)
  return family, tokenizer_lib.load_tokenizer(directory), transformers.AutoTokenizer.from_pretrained(directory)


@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_matches_transformers(tokenizer_pair, conversation, add_generation_prompt):
  _, ours, reference = tokenizer_pair
  messages = CONVERSATIONS[conversation]
  expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
  assert ours.apply_chat_template(messages, add_generation_prompt=add_generation_prompt) == expected
  expected_ids = reference.apply_chat_template(
    messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False
  )
  assert ours.apply_chat_template_ids(messages, add_generation_prompt=add_generation_prompt) == list(expected_ids)


def test_template_kwargs_and_tools_match_transformers(tokenizer_pair):
  family, ours, reference = tokenizer_pair
  messages = [SYSTEM, USER]
  for kwargs in ({"enable_thinking": False}, {"enable_thinking": True}, {"date_string": "01 Jan 2025"}):
    expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    assert ours.apply_chat_template(messages, **kwargs) == expected
  expected = reference.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
  rendered = ours.apply_chat_template(messages, tools=TOOLS)
  assert rendered == expected
  assert "<tests> & report ✓" in rendered  # tojson must neither HTML-escape nor ASCII-escape
  if family == "llama3":
    assert rendered.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment")
    assert '\n    "type": "function"' in rendered  # tojson(indent=4)


def test_structure_of_rendered_prompts(tokenizer_pair):
  family, ours, _ = tokenizer_pair
  text = ours.apply_chat_template([SYSTEM, USER])
  if family == "qwen3":
    assert text == (
      "<|im_start|>system\nYou are an expert Python programmer.<|im_end|>\n"
      f"<|im_start|>user\n{USER['content']}<|im_end|>\n<|im_start|>assistant\n"
    )
  else:
    assert text.startswith(
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
      "Cutting Knowledge Date: December 2023\nToday Date: "
    )
    assert text.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_raise_exception_surfaces_as_chat_template_error(tmp_path):
  directory = build_hf_tokenizer_dir(tmp_path, "llama3")
  tok = tokenizer_lib.load_tokenizer(directory)
  with pytest.raises(chat_template_lib.ChatTemplateError, match="unsupported role: tool"):
    tok.apply_chat_template([{"role": "tool", "content": "x"}])
  with pytest.raises(chat_template_lib.ChatTemplateError, match="message 0"):
    tok.apply_chat_template([{"content": "no role"}])


def test_named_templates(tmp_path):
  directory = build_hf_tokenizer_dir(tmp_path, "qwen3")
  path = os.path.join(directory, "tokenizer_config.json")
  with open(path) as f:
    config = json.load(f)
  config["chat_template"] = [
    {"name": "default", "template": "D{{ messages[0].content }}"},
    {"name": "tool_use", "template": "T{{ messages[0].content }}"},
  ]
  with open(path, "w") as f:
    json.dump(config, f)
  message = [{"role": "user", "content": "x"}]
  assert tokenizer_lib.load_tokenizer(directory).apply_chat_template(message) == "Dx"
  assert tokenizer_lib.load_tokenizer(directory, chat_template_name="tool_use").apply_chat_template(message) == "Tx"
  with pytest.raises(chat_template_lib.ChatTemplateError, match="no chat template named 'other'"):
    tokenizer_lib.load_tokenizer(directory, chat_template_name="other")
  with pytest.raises(chat_template_lib.ChatTemplateError, match="does not parse"):
    chat_template_lib.render_chat_template("{% for %}", message)


def test_chat_formatter_for_a_problem_matches_transformers(tokenizer_pair):
  _, ours, reference = tokenizer_pair
  problem = Problem(task_id="t", question="Add two numbers.", starter_code="def add(a, b):\n")
  messages = chat.problem_to_messages(problem)
  format_chat = chat.make_chat_formatter(ours, enable_thinking=False)
  expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
  assert chat.problem_prompt(problem, format_chat) == format_chat(messages) == expected
