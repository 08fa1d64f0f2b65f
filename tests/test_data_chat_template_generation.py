"""`{% generation %}` blocks (transformers' assistant-mask marker) render as their body."""

import pytest

from ssd_jax.data import chat_template as chat_template_lib

# A ChatML template whose assistant turns are marked (with whitespace control and a variable set inside the
# block); TAGGED without the markers is PLAIN.
TAGGED = (
  "{% for message in messages %}"
  "{{ '<|im_start|>' + message['role'] + '\\n' }}"
  "{% if message['role'] == 'assistant' %}"
  "{%- generation -%}"
  "{% set answer = message['content'] | trim %}{{ answer + '<|im_end|>' }}"
  "{%- endgeneration -%}"
  "{{ '\\n' }}"
  "{% else %}"
  "{{ message['content'] + '<|im_end|>' }}\n"
  "{% endif %}"
  "{% endfor %}"
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PLAIN = TAGGED.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
MESSAGES = [
  {"role": "system", "content": "Be brief."},
  {"role": "user", "content": "Add 1 and 2."},
  {"role": "assistant", "content": " 3 \n"},
  {"role": "user", "content": "And 2 and 2?"},
  {"role": "assistant", "content": "4"},
]
MULTILINE = """{% for m in messages %}
{% if m.role == 'assistant' %}
{% generation %}
A: {{ m.content }}
{% endgeneration %}
{% else %}
U: {{ m.content }}
{% endif %}
{% endfor %}"""

# A variable set inside the block stays inside it, as in transformers, where the block is a call block too.
SCOPED = "{% set x = 'outer' %}{% generation %}{% set x = 'inner' %}{{ x }} {% endgeneration %}{{ x }}"


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_generation_block_renders_as_its_body(add_generation_prompt):
  tagged = chat_template_lib.render_chat_template(TAGGED, MESSAGES, add_generation_prompt=add_generation_prompt)
  plain = chat_template_lib.render_chat_template(PLAIN, MESSAGES, add_generation_prompt=add_generation_prompt)
  assert tagged == plain
  assert "<|im_start|>assistant\n3<|im_end|>" in tagged


def test_generation_block_on_lines_of_its_own():
  rendered = chat_template_lib.render_chat_template(MULTILINE, MESSAGES[1:3])
  assert rendered == "U: Add 1 and 2.\nA:  3 \n\n"
  assert rendered == chat_template_lib.render_chat_template(
    MULTILINE.replace("{% generation %}\n", "").replace("{% endgeneration %}\n", ""), MESSAGES[1:3]
  )


def test_variables_set_in_a_generation_block_stay_in_it():
  assert chat_template_lib.render_chat_template(SCOPED, MESSAGES) == "inner outer"


def test_unclosed_generation_block_is_a_parse_error():
  with pytest.raises(chat_template_lib.ChatTemplateError, match="does not parse"):
    chat_template_lib.render_chat_template("{% generation %}x", MESSAGES)


@pytest.mark.parametrize("template", [TAGGED, MULTILINE, SCOPED], ids=["tagged", "multiline", "scoped"])
def test_generation_block_renders_as_transformers_does(template):
  chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")
  for add_generation_prompt in (True, False):
    expected, _ = chat_template_utils.render_jinja_template(
      [MESSAGES], chat_template=template, add_generation_prompt=add_generation_prompt
    )
    ours = chat_template_lib.render_chat_template(template, MESSAGES, add_generation_prompt=add_generation_prompt)
    assert ours == expected[0]
