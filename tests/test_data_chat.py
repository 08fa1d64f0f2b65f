"""Chat messages for a problem, and the `format_chat` hook."""

import pytest

from ssd_jax.data import chat
from ssd_jax.data.problems import Problem, TestCase


def test_problem_to_messages():
  problem = Problem(
    task_id="t",
    question="  Add two numbers.\n",
    starter_code="def add(a, b):\n",
    public_tests=(TestCase("p", code="assert add(1, 2) == 3"), TestCase("q", stdin="1 2", expected_stdout="3")),
  )
  messages = chat.problem_to_messages(problem)
  assert messages[0] == {"role": "system", "content": chat.DEFAULT_SYSTEM_PROMPT}
  assert "```python" in chat.DEFAULT_SYSTEM_PROMPT and "expert Python programmer" in chat.DEFAULT_SYSTEM_PROMPT
  user = messages[1]["content"]
  assert user.startswith("Add two numbers.\n\n") and "```python\ndef add(a, b):\n```" in user
  assert "Example" not in user
  with_tests = chat.problem_to_messages(problem, system_prompt=None, include_public_tests=True)
  assert [m["role"] for m in with_tests] == ["user"]
  assert "Example 1:\n```python\nassert add(1, 2) == 3\n```" in with_tests[0]["content"]
  assert "Example 2:\nInput:\n1 2\nExpected output:\n3" in with_tests[0]["content"]
  stdio = chat.problem_to_messages(Problem(task_id="s", question="Read n."))[1]["content"]
  assert stdio == "Read n.\n\n" + chat.STDIO_INSTRUCTION
  with pytest.raises(ValueError, match="empty question"):
    chat.problem_to_messages(Problem(task_id="e", question=" \n"))


def test_problem_prompt_uses_format_chat_hook():
  seen = []

  def format_chat(messages):
    seen.append(messages)
    return "|".join(f"{m['role']}:{m['content']}" for m in messages)

  problem = Problem(task_id="t", question="Q")
  text = chat.problem_prompt(problem, format_chat, system_prompt="S")
  assert text == f"system:S|user:Q\n\n{chat.STDIO_INSTRUCTION}"
  assert seen == [chat.problem_to_messages(problem, system_prompt="S")]
