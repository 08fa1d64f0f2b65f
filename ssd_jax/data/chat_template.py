"""Jinja chat templates, rendered the way Hugging Face `transformers` renders them.

A checkpoint ships its chat template in `tokenizer_config.json` (`chat_template`: a string, or a list of
`{"name", "template"}` entries) or in a `chat_template.jinja` file next to it. Rendering uses a sandboxed
Jinja environment with `trim_blocks`/`lstrip_blocks`, the loop-controls extension, the `{% generation %}` block
(rendered as its body), a `tojson` filter that does not HTML-escape, and the `raise_exception` / `strftime_now`
globals the published templates call.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.runtime
from jinja2.sandbox import ImmutableSandboxedEnvironment

CHAT_TEMPLATE_FILE = "chat_template.jinja"
DEFAULT_TEMPLATE_NAME = "default"


class ChatTemplateError(ValueError):
  """A chat template is missing, ambiguous, or failed to render."""


def _raise_exception(message: str) -> None:
  raise jinja2.exceptions.TemplateError(message)


def _tojson(
  value: Any,
  ensure_ascii: bool = False,
  indent: int | None = None,
  separators: tuple[str, str] | None = None,
  sort_keys: bool = False,
) -> str:
  # Jinja's own `tojson` HTML-escapes `<`, `>` and `&`, which would corrupt special tokens and code.
  return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
  return datetime.datetime.now().strftime(fmt)


class _GenerationBlock(jinja2.ext.Extension):
  """`{% generation %}...{% endgeneration %}`, rendered as its body alone.

  Templates mark the assistant's text with this block so that transformers (its `AssistantTracker`
  extension) can return an assistant-token mask; the text is the same as without the tags. It is parsed into
  the same call block as there, so variables set inside it stay inside it in both.
  """

  tags = {"generation"}

  def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.CallBlock:
    lineno = next(parser.stream).lineno
    body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
    return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

  def _body(self, caller: jinja2.runtime.Macro) -> str:
    return caller()


@functools.lru_cache(maxsize=32)
def compile_chat_template(source: str) -> jinja2.Template:
  """Compiles a chat template source string (cached, templates are immutable)."""
  env = ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
  )
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = _strftime_now
  try:
    return env.from_string(source)
  except jinja2.TemplateSyntaxError as e:
    raise ChatTemplateError(f"chat template does not parse (line {e.lineno}): {e.message}") from e


def select_chat_template(
  raw: str | Sequence[Mapping[str, str]] | Mapping[str, str] | None, name: str | None = None
) -> str | None:
  """Picks one template source out of what a tokenizer config stores.

  Args:
    raw: the `chat_template` value: a string, a list of `{"name": ..., "template": ...}` entries,
      a `{name: template}` mapping, or None.
    name: which named template to use; None means the one named "default" when there are several.

  Returns:
    The template source, or None when `raw` is None.
  """
  if raw is None:
    return None
  if isinstance(raw, str):
    if name not in (None, DEFAULT_TEMPLATE_NAME):
      raise ChatTemplateError(f"chat template {name!r} requested but the tokenizer has a single unnamed template")
    return raw
  if isinstance(raw, Mapping):
    named = dict(raw)
  else:
    try:
      named = {entry["name"]: entry["template"] for entry in raw}
    except (KeyError, TypeError) as e:
      raise ChatTemplateError("chat_template list entries must be {'name': ..., 'template': ...} objects") from e
  wanted = DEFAULT_TEMPLATE_NAME if name is None else name
  if wanted not in named:
    raise ChatTemplateError(f"no chat template named {wanted!r}; available: {sorted(named)}")
  return named[wanted]


def read_chat_template(
  directory: str | os.PathLike, tokenizer_config: Mapping[str, Any], name: str | None = None
) -> str | None:
  """Returns the template source of a checkpoint directory, or None when it has none.

  `chat_template.jinja` takes precedence over `tokenizer_config.json`'s `chat_template` field, as in
  `transformers`, which writes the file and leaves the field out.
  """
  path = os.path.join(directory, CHAT_TEMPLATE_FILE)
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      return select_chat_template(f.read(), name)
  return select_chat_template(tokenizer_config.get("chat_template"), name)


def _plain(value: Any) -> Any:
  """Rebuilds template inputs from plain JSON types (tuples of messages, frozen dataclasses, ...)."""
  if value is None or isinstance(value, (str, bool, int, float)):
    return value
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  raise ChatTemplateError(f"chat template input of type {type(value).__name__} is not JSON-like")


def render_chat_template(
  source: str,
  messages: Sequence[Mapping[str, Any]],
  *,
  add_generation_prompt: bool = True,
  special_tokens: Mapping[str, str] | None = None,
  tools: Sequence[Mapping] | None = None,
  **template_kwargs: Any,
) -> str:
  """Renders a conversation to the prompt string the model was trained on.

  Args:
    source: the Jinja template source.
    messages: `[{"role": ..., "content": ...}, ...]`.
    add_generation_prompt: append the header that opens the assistant's turn.
    special_tokens: `bos_token`, `eos_token`, ... as template variables.
    tools: JSON-schema tool descriptions, passed as `tools`.
    **template_kwargs: extra template variables (e.g. `enable_thinking=False`); they override special tokens.

  Returns:
    The rendered text (special tokens appear as text; encode it without adding special tokens).
  """
  for i, message in enumerate(messages):
    if not isinstance(message, Mapping) or "role" not in message:
      raise ChatTemplateError(f"message {i} must be a mapping with a 'role' key, got {message!r}")
  variables = {**(special_tokens or {}), **_plain(template_kwargs)}
  try:
    return compile_chat_template(source).render(
      messages=_plain(list(messages)),
      tools=_plain(tools),
      documents=None,
      add_generation_prompt=add_generation_prompt,
      **variables,
    )
  except jinja2.TemplateError as e:
    raise ChatTemplateError(f"chat template failed to render: {e}") from e
