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


def _user_prompt(**fields):
  return chat.format_user_prompt(Problem(task_id="t", question="Write a function to add two numbers.", **fields))


def test_mbpp_style_problem_is_told_the_function_to_define():
  asserts = (TestCase("t", code="assert add_nums(1, 2) == 3"),)
  text = _user_prompt(entry_point="add_nums", tests=asserts)
  assert "`add_nums`" in text and chat.STDIO_INSTRUCTION not in text
  assert text == "Write a function to add two numbers.\n\n" + chat.FUNCTION_INSTRUCTION.format(entry_point="add_nums")


def test_stdio_instruction_only_when_every_test_is_stdio():
  stdio = TestCase("s", stdin="1 2\n", expected_stdout="3\n")
  code = TestCase("c", code="assert add_nums(1, 2) == 3")
  assert _user_prompt(tests=(stdio, stdio)).endswith("\n\n" + chat.STDIO_INSTRUCTION)
  for tests in ((code,), (stdio, code)):
    text = _user_prompt(tests=tests)
    assert chat.STDIO_INSTRUCTION not in text
    assert text == "Write a function to add two numbers.\n\n" + chat.CALLED_NAME_INSTRUCTION.format(name="add_nums")


def test_assert_tests_without_entry_point_or_starter_name_what_they_call():
  def instruction(*codes, question="Write a function to remove a character."):
    text = chat.format_user_prompt(
      Problem(task_id="t", question=question, tests=tuple(TestCase(f"t{i}", code=c) for i, c in enumerate(codes)))
    )
    return text.removeprefix(question + "\n\n")

  called = chat.CALLED_NAME_INSTRUCTION.format(name="remove_occ")
  assert instruction('assert remove_occ("hello", "l") == "heo"', 'assert remove_occ("ab", "c") == "ab"') == called
  # Builtins, standard modules the test uses, and names the test binds itself are not what it calls.
  helpers = "import re\ndef norm(s):\n  return s.strip()\nassert math.isclose(len(norm(remove_occ('a ', 'b'))), 1)"
  assert instruction(helpers) == called
  assert instruction("def check(candidate):\n  assert candidate(1) == 2\n\ncheck(remove_occ)") == called
  # Two candidate names, none, or a test that does not parse: the plain instruction.
  assert instruction("assert f(1) == g(1)") == chat.CODE_INSTRUCTION
  assert instruction("assert 1 == 1") == chat.CODE_INSTRUCTION
  assert instruction("assert remove_occ(1 ==") == chat.CODE_INSTRUCTION
  # A question that already shows the call is left as it was.
  shown = "Write `remove_occ(s, ch)`."
  assert instruction("assert remove_occ('a', 'a') == ''", question=shown) == chat.CODE_INSTRUCTION


def test_questions_showing_the_call_and_starter_code_prompts_are_unchanged():
  # The built-in task names its function with a signature; such a prompt gets no instruction (as before).
  shown = Problem(task_id="b", question="Write a function `apply(value)` that adds 7.", entry_point="apply")
  assert chat.format_user_prompt(shown) == shown.question
  starter = _user_prompt(entry_point="add_nums", starter_code="def add_nums(a, b):\n")
  assert starter.endswith(f"{chat.STARTER_CODE_INSTRUCTION}\n```python\ndef add_nums(a, b):\n```")
  assert chat.FUNCTION_INSTRUCTION.format(entry_point="add_nums") not in starter
  # A name that only appears as a word of the question is not its call.
  assert _user_prompt(entry_point="add").endswith(chat.FUNCTION_INSTRUCTION.format(entry_point="add"))
