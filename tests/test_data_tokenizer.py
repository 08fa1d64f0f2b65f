"""Tokenizer loading: local tokenizer.json / SentencePiece models checked against transformers and round trips.

Also holds the builders of small local checkpoints' tokenizer files, which the chat tests import.
"""

import io
import json
import os
import types

import numpy as np
import pytest
import sentencepiece
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from ssd_jax.data import chat_template as chat_template_lib
from ssd_jax.data import sft_examples, tokenizer_base
from ssd_jax.data import tokenizer as tokenizer_lib
from ssd_jax.evals.code_extraction import extract_code
from ssd_jax.sampling.completions import completion_text, graded_completion_text
from ssd_jax.sampling.generate import Generation

CORPUS = [
  "def add(a, b):\n    return a + b\n",
  "Write a Python function that returns the sum of a list of integers.",
  "The quick brown fox jumps over the lazy dog. Ünïcödé and émojis 🙂 too.",
  "for i in range(10):\n\tprint(i * i)\n",
  "You are an expert Python programmer. Put your final solution in a single code block.",
  "import sys\nn = int(sys.stdin.readline())\nprint(n)\n",
]

# A Qwen3-style template: system/user/assistant turns in <|im_start|>/<|im_end|>, tool calls and responses,
# and the <think> handling of assistant turns after the last user query.
QWEN3_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

# A Llama-3.x-style template: BOS, a system header with the knowledge-cutoff and today's date lines,
# headers around each role, <|eot_id|> after each turn, tools rendered with tojson(indent=4).
LLAMA3_TEMPLATE = r"""{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none %}
    {{- "You have access to the following functions.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message['role'] not in ['system', 'user', 'assistant'] %}
        {{- raise_exception('unsupported role: ' + message['role']) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

FAMILIES = {
  "qwen3": dict(
    special=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    added=["<think>", "</think>"],
    config=dict(bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"),
    template=QWEN3_TEMPLATE,
    generation_eos=["<|im_end|>", "<|endoftext|>"],
    bos_post=None,
  ),
  "llama3": dict(
    special=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    added=[],
    config=dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token=None),
    template=LLAMA3_TEMPLATE,
    generation_eos=["<|end_of_text|>", "<|eot_id|>"],
    bos_post="<|begin_of_text|>",
  ),
}


def build_hf_tokenizer_dir(directory, family: str, template_in_file: bool = False) -> str:
  """Trains a byte-level BPE on CORPUS and writes a Hugging Face style tokenizer directory."""
  spec = FAMILIES[family]
  os.makedirs(directory, exist_ok=True)
  raw = RawTokenizer(models.BPE())
  raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  raw.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=400, special_tokens=spec["special"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
  )
  raw.train_from_iterator(CORPUS, trainer)
  raw.add_tokens(spec["added"])
  if spec["bos_post"]:
    bos = spec["bos_post"]
    raw.post_processor = processors.TemplateProcessing(
      single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, raw.token_to_id(bos))]
    )
  raw.save(os.path.join(directory, "tokenizer.json"))
  config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096, **spec["config"]}
  if template_in_file:
    with open(os.path.join(directory, "chat_template.jinja"), "w", encoding="utf-8") as f:
      f.write(spec["template"])
  else:
    config["chat_template"] = spec["template"]
  with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
    json.dump(config, f)
  with open(os.path.join(directory, "generation_config.json"), "w", encoding="utf-8") as f:
    json.dump({"eos_token_id": [raw.token_to_id(t) for t in spec["generation_eos"]]}, f)
  return str(directory)


@pytest.fixture(scope="module", params=["qwen3", "llama3"])
def hf_dir(request, tmp_path_factory):
  return request.param, build_hf_tokenizer_dir(tmp_path_factory.mktemp(request.param), request.param)


def test_hf_encode_decode_match_transformers(hf_dir):
  transformers = pytest.importorskip("transformers")
  family, directory = hf_dir
  ours = tokenizer_lib.load_tokenizer(directory)
  reference = transformers.AutoTokenizer.from_pretrained(directory)
  texts = CORPUS + ["<|im_start|>user\nhi<|im_end|>\n", "<|begin_of_text|>x<|eot_id|>", "", "  lead and trail  "]
  for text in texts:
    for add_special in (False, True):
      expected = reference.encode(text, add_special_tokens=add_special)
      assert ours.encode(text, add_special_tokens=add_special) == expected, (family, text, add_special)
    ids = ours.encode(text)
    for skip in (False, True):
      assert ours.decode(ids, skip_special_tokens=skip) == reference.decode(ids, skip_special_tokens=skip)
  assert ours.vocab_size == len(reference)
  assert ours.eos_id == reference.eos_token_id
  assert ours.bos_id == reference.bos_token_id
  assert ours.pad_id == reference.pad_token_id


def test_hf_stop_ids(hf_dir):
  family, directory = hf_dir
  tok = tokenizer_lib.load_tokenizer(directory)
  raw = RawTokenizer.from_file(os.path.join(directory, "tokenizer.json"))
  expected = {raw.token_to_id(t) for t in FAMILIES[family]["generation_eos"]}
  expected |= {raw.token_to_id(t) for t in tokenizer_base.END_OF_TURN_TOKENS if raw.token_to_id(t) is not None}
  assert set(tok.stop_ids) == expected
  assert tok.eos_id in tok.stop_ids
  if family == "qwen3":
    assert tok.bos_id is None and raw.token_to_id("<|im_end|>") in tok.stop_ids
  else:
    assert raw.token_to_id("<|eot_id|>") in tok.stop_ids and raw.token_to_id("<|end_of_text|>") in tok.stop_ids


def test_missing_files_and_template_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    tokenizer_lib.load_tokenizer(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor tokenizer.model"):
    tokenizer_lib.load_tokenizer(tmp_path)
  (tmp_path / "vocab.txt").write_text("a\n")
  with pytest.raises(ValueError, match="not a SentencePiece"):
    tokenizer_lib.load_tokenizer(tmp_path / "vocab.txt")
  directory = build_hf_tokenizer_dir(tmp_path / "hf", "qwen3")
  config_path = os.path.join(directory, "tokenizer_config.json")
  with open(config_path) as f:
    config = json.load(f)
  del config["chat_template"]
  with open(config_path, "w") as f:
    json.dump(config, f)
  tok = tokenizer_lib.load_tokenizer(directory)
  with pytest.raises(chat_template_lib.ChatTemplateError, match="no chat template"):
    tok.apply_chat_template([{"role": "user", "content": "hi"}])


def _train_sentencepiece(path_prefix: str) -> str:
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
    sentence_iterator=iter(CORPUS * 4),
    model_writer=model,
    vocab_size=100,
    model_type="unigram",
    character_coverage=1.0,
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    allow_whitespace_only_pieces=True,
    user_defined_symbols=["<|im_end|>"],
    minloglevel=2,
    hard_vocab_limit=False,
  )
  path = path_prefix + ".model"
  with open(path, "wb") as f:
    f.write(model.getvalue())
  return path


def test_sentencepiece_round_trip(tmp_path):
  path = _train_sentencepiece(str(tmp_path / "sp"))
  tok = tokenizer_lib.load_tokenizer(path)
  assert isinstance(tok, tokenizer_lib.SentencePieceTokenizer)
  reference = sentencepiece.SentencePieceProcessor(model_file=path)
  for text in CORPUS + ["unseen words 10"]:
    ids = tok.encode(text)
    assert ids == reference.encode(text)
    assert tok.decode(ids) == reference.decode(ids) == text
    with_bos = tok.encode(text, add_special_tokens=True)
    assert with_bos[0] == tok.bos_id == reference.bos_id() and with_bos[1:] == ids
    assert tok.decode(with_bos + [tok.eos_id]) == "<s>" + text + "</s>"
    assert tok.decode(with_bos + [tok.eos_id], skip_special_tokens=True) == text
  assert tok.vocab_size == reference.get_piece_size()
  assert tok.token_to_id("<|im_end|>") in tok.stop_ids and tok.eos_id in tok.stop_ids
  assert tok.token_to_id("definitely-not-a-piece") is None
  assert reference.unk_id() in tok.encode("✓")  # a character never seen in training


def test_sentencepiece_directory_with_chat_template(tmp_path):
  _train_sentencepiece(str(tmp_path / "tokenizer"))
  with open(tmp_path / "tokenizer_config.json", "w") as f:
    json.dump(
      {
        "chat_template": [
          {
            "name": "default",
            "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
          }
        ]
      },
      f,
    )
  tok = tokenizer_lib.load_tokenizer(tmp_path)
  assert isinstance(tok, tokenizer_lib.SentencePieceTokenizer)
  assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "<s>[user]hi"


def _sentencepiece_dir_with_config(directory, config: dict) -> str:
  """A SentencePiece directory (CORPUS model) with a Llama-style tokenizer_config.json updated by `config`."""
  _train_sentencepiece(os.path.join(directory, "tokenizer"))
  llama_config = {
    "tokenizer_class": "LlamaTokenizer",
    "legacy": False,
    "add_bos_token": False,
    "add_eos_token": False,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
  }
  with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
    json.dump({**llama_config, **config}, f)
  return str(directory)


def test_sentencepiece_special_tokens_in_text_match_transformers(tmp_path):
  transformers = pytest.importorskip("transformers")
  template = (
    "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
  )
  directory = _sentencepiece_dir_with_config(tmp_path, {"chat_template": template})
  ours = tokenizer_lib.load_tokenizer(directory)
  reference = transformers.AutoTokenizer.from_pretrained(directory)
  # Texts on which transformers' LlamaTokenizer segments plain text as SentencePiece does, which it does not always.
  conversations = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "Write a function."}, {"role": "assistant", "content": "for i in range(10):"}],
  ]
  for messages in conversations:
    for add_generation_prompt in (False, True):
      ids = ours.apply_chat_template_ids(messages, add_generation_prompt)
      expected = reference.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False
      )
      assert ids == list(expected), (messages, add_generation_prompt)
      assert ids[0] == ours.bos_id == 1 and ours.eos_id == 2 and ids.count(ours.eos_id) == len(messages)
  texts = ["<s>user: hi</s>", "hi <s> print(n)", "a<s>b</s></s>", "x<|im_end|>\ny", "<unk>a", "</s>", CORPUS[2]]
  for text in texts:
    assert ours.encode(text) == reference.encode(text, add_special_tokens=False), text
  assert sft_examples.end_of_turn_ids(ours) == (ours.eos_id,)


def test_sentencepiece_sft_example_is_the_rendered_conversation(tmp_path):
  # The referee: transformers tokenizing the whole conversation. Encoded on its own, the response began with
  # SentencePiece's dummy "▁", a token the model never emits after the generation prompt.
  transformers = pytest.importorskip("transformers")
  template = (
    "{{ bos_token }}{% for m in messages %}{{ m.role }}<|im_end|>{{ m.content }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}assistant<|im_end|>{% endif %}"
  )
  directory = _sentencepiece_dir_with_config(tmp_path, {"chat_template": template})
  ours = tokenizer_lib.load_tokenizer(directory)
  reference = transformers.AutoTokenizer.from_pretrained(directory)
  prompt = [{"role": "user", "content": "Write a function."}]
  for response in ("for i in range(10):", "return x"):  # texts transformers segments as SentencePiece does
    example = sft_examples.build_sft_example(ours, prompt, response, max_len=None)
    whole = prompt + [{"role": "assistant", "content": response}]
    expected = reference.apply_chat_template(whole, tokenize=True, return_dict=False)
    assert example["tokens"].tolist() == list(expected), response
    assert ours.decode(example["tokens"][example["loss_mask"] == 1][:1].tolist()) != "▁"


def test_a_thinking_section_the_prompt_opens_is_graded_as_reasoning(tmp_path):
  # Qwen3 thinking templates end the generation prompt with "<think>\n": completions hold only the close, so a
  # cut-off one would have had the drafts in its reasoning graded as the answer.
  opens = "{% for m in messages %}{{ m.role }}: {{ m.content }}{% endfor %}{% if add_generation_prompt %}A: <think>\n{% endif %}"
  closed = opens.replace("<think>\n", "<think>\n\n</think>\n\n")
  (tmp_path / "opens").mkdir()
  (tmp_path / "closed").mkdir()
  tok = tokenizer_lib.load_tokenizer(_sentencepiece_dir_with_config(tmp_path / "opens", {"chat_template": opens}))
  assert tok.thinking_opener == "<think>\n"
  closed_tok = tokenizer_lib.load_tokenizer(
    _sentencepiece_dir_with_config(tmp_path / "closed", {"chat_template": closed})
  )
  assert closed_tok.thinking_opener == ""

  def read(tokenizer, text):  # a decoder whose ids decode to `text`, with the tokenizer's opener
    decoder = types.SimpleNamespace(thinking_opener=tokenizer.thinking_opener, decode=lambda ids: text)
    generation = Generation(0, 0, np.arange(3), "length", np.zeros(3), np.zeros(3))
    return completion_text(decoder, generation), graded_completion_text(decoder, generation)

  draft = "A draft:\n```python\nx = 1\n```\nbut"
  written, graded = read(tok, draft)
  assert extract_code(written) == "x = 1\n" and extract_code(graded) == ""  # cut-off reasoning is no answer
  done = draft + " no.</think>\n```python\ny = 2\n```"
  assert extract_code(read(tok, done)[1]) == "y = 2\n"
  assert read(closed_tok, done)[0] == read(closed_tok, done)[1]


def test_end_of_turn_ids_are_the_tokens_that_follow_the_content(tmp_path):
  # "\n</s>" after an assistant's content: encoded on its own, SentencePiece would begin it with "▁".
  template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{{ eos_token }}{% endfor %}"
  ours = tokenizer_lib.load_tokenizer(_sentencepiece_dir_with_config(tmp_path, {"chat_template": template}))
  rendered = ours.apply_chat_template_ids([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
  end = sft_examples.end_of_turn_ids(ours)
  assert [ours.processor.id_to_piece(i) for i in end] == ["\n", "</s>"]
  assert tuple(rendered[-len(end) :]) == end


@pytest.mark.parametrize(
  "config_update, special_map",
  [
    ({}, {"eos_token": "<|endoftext|>", "bos_token": "<|im_start|>"}),
    ({}, {"eos_token": {"content": "<|endoftext|>", "lstrip": False, "rstrip": False, "normalized": False}}),
    ({}, {"eos_token": None}),
    # With added_tokens_decoder (transformers >= 4.34 saves) transformers ignores special_tokens_map.json.
    ({"added_tokens_decoder": {"2": {"content": "<|im_end|>", "special": True}}}, {"eos_token": "<|endoftext|>"}),
  ],
)
def test_special_tokens_map_precedence_matches_transformers(tmp_path, config_update, special_map):
  transformers = pytest.importorskip("transformers")
  directory = build_hf_tokenizer_dir(tmp_path, "qwen3")
  config_path = os.path.join(directory, "tokenizer_config.json")
  with open(config_path) as f:
    config = json.load(f)
  with open(config_path, "w") as f:
    json.dump({**config, **config_update}, f)
  with open(os.path.join(directory, "special_tokens_map.json"), "w") as f:
    json.dump(special_map, f)
  ours = tokenizer_lib.load_tokenizer(directory)
  reference = transformers.AutoTokenizer.from_pretrained(directory)
  for name in ("bos_token", "eos_token", "pad_token"):
    assert ours.special_tokens.get(name) == getattr(reference, name), name
  assert (ours.bos_id, ours.eos_id, ours.pad_id) == (
    reference.bos_token_id,
    reference.eos_token_id,
    reference.pad_token_id,
  )


@pytest.mark.parametrize("key", ["additional_special_tokens", "extra_special_tokens"])
def test_sentencepiece_added_tokens_match_transformers(tmp_path, key):
  transformers = pytest.importorskip("transformers")
  # "in" is an ordinary piece of the model; declared special, it is matched before SentencePiece segments the rest.
  directory = _sentencepiece_dir_with_config(tmp_path, {key: ["in"]})
  ours = tokenizer_lib.load_tokenizer(directory)
  reference = transformers.AutoTokenizer.from_pretrained(directory)
  text = "prinint(n)"
  assert ours.encode(text) == reference.encode(text, add_special_tokens=False)
  assert ours.encode(text) != ours.processor.encode(text)


def test_sentencepiece_tokens_outside_the_model_are_refused(tmp_path):
  directory = _sentencepiece_dir_with_config(tmp_path, {"pad_token": "<pad>"})
  with pytest.raises(ValueError, match="'<pad>', which is not a piece of the SentencePiece model"):
    tokenizer_lib.load_tokenizer(directory)
  directory = _sentencepiece_dir_with_config(tmp_path, {"added_tokens_decoder": {"7": {"content": "</s>"}}})
  with pytest.raises(ValueError, match="added_tokens_decoder gives '</s>' the id 7, but it is piece 2"):
    tokenizer_lib.load_tokenizer(directory)
