"""Prompts for code problems, rendered through an optional chat template."""

from __future__ import annotations

from collections.abc import Callable

from ssd_jax.evals.problems import Problem

DEFAULT_SYSTEM_MESSAGE = (
  "You are an expert Python programmer. Solve the problem. Reply with a complete Python "
  "solution in a single fenced code block (```python ... ```)."
)
STDIO_INSTRUCTION = "Read the input from standard input and write the answer to standard output."
FUNCTION_INSTRUCTION = "Complete the code below; keep the given signature."
MAX_PUBLIC_EXAMPLES = 3


def _format_public_tests(problem: Problem) -> str:
  examples = []
  for test in problem.public_tests[:MAX_PUBLIC_EXAMPLES]:
    if test.is_stdio:
      examples.append(f"Input:\n{test.stdin or ''}\nOutput:\n{test.expected_stdout}")
    else:
      examples.append(test.code)
  return "Examples:\n" + "\n\n".join(examples) if examples else ""


def build_messages(problem: Problem, system_message: str = DEFAULT_SYSTEM_MESSAGE) -> list[dict]:
  """Chat messages (system + user) asking for a solution to ``problem``."""
  parts = [problem.question.strip()]
  if problem.starter_code and problem.starter_code.strip() not in problem.question:
    parts.append(f"{FUNCTION_INSTRUCTION}\n```python\n{problem.starter_code.rstrip()}\n```")
  elif not problem.starter_code and not problem.entry_point:
    parts.append(STDIO_INSTRUCTION)
  examples = _format_public_tests(problem)
  if examples and examples not in problem.question:
    parts.append(examples)
  return [{"role": "system", "content": system_message}, {"role": "user", "content": "\n\n".join(parts)}]


def build_prompt(
  problem: Problem, format_chat: Callable[[list[dict]], str] | None = None, system_message: str = DEFAULT_SYSTEM_MESSAGE
) -> str:
  """The prompt text for ``problem``.

  Args:
    problem: the problem.
    format_chat: renders chat messages with a model's chat template (including the
      assistant turn's opening); when None, messages are joined as plain text.
    system_message: instruction placed in the system turn.
  """
  messages = build_messages(problem, system_message)
  if format_chat is not None:
    return format_chat(messages)
  return "\n\n".join(message["content"] for message in messages) + "\n\n"
