"""Turning a coding problem into chat messages, and messages into a prompt string.

Two prompt styles (`prompting.style`): "project", this project's wording (a system message asking for a Python
solution in one fenced code block, then the title, question and what to write), and "lcb_release", the
LiveCodeBench prompt of the SSD authors' released evaluation code (apple/ml-ssd, evaluation/benchmark.py): one
user turn, no system message, the question without its title, no examples, the same for instruct and thinking
models. The paper rows use "lcb_release". `make_chat_formatter(tokenizer)` returns the `format_chat(messages) ->
str` hook the evaluation prompt builder takes.
"""

from __future__ import annotations

import ast
import builtins
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ssd_jax.data.code_names import names_read_not_bound

if TYPE_CHECKING:
  from ssd_jax.data.problems import Problem, TestCase
  from ssd_jax.data.tokenizer import Tokenizer

Messages = list[dict[str, str]]

DEFAULT_SYSTEM_PROMPT = (
  "You are an expert Python programmer. You will be given a programming problem and will write a correct, "
  "efficient Python program that meets the specification and passes all tests. Think about the problem, then "
  "put your final solution in a single ```python code block."
)

STARTER_CODE_INSTRUCTION = (
  "Complete the following starter code; keep its signatures unchanged and put the whole solution in a "
  "single ```python code block:"
)
STDIO_INSTRUCTION = (
  "Read the input from standard input and write the answer to standard output; do not hard-code the "
  "examples. Put the whole program in a single ```python code block."
)
FUNCTION_INSTRUCTION = (
  "Define the solution as a Python function named `{entry_point}`; the tests call it by that name. Put the "
  "whole solution in a single ```python code block."
)
CALLED_NAME_INSTRUCTION = (
  "The tests call `{name}`; define it under that name and put the whole solution in a single ```python code block."
)
CODE_INSTRUCTION = "Put the whole solution in a single ```python code block."

PROMPT_STYLES = ("project", "lcb_release")
# The released templates, verbatim: `problem_description` is the question alone, `entry_point` the starter code.
LCB_PROMPT_WITHOUT_STARTER_CODE = (
  "You will be given a question (problem specification) and will generate a correct Python program that matches "
  "the specification and passes all tests. You will NOT return anything except for the program.\n\n"
  "Question: {problem_description}\n\n"
  "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample "
  "inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the "
  "inputs, runs the algorithm and writes output to STDOUT.\n"
  "```python\n  # YOUR CODE HERE\n```"
)
LCB_PROMPT_WITH_STARTER_CODE = (
  "You will be given a question (problem specification) and will generate a correct Python program that matches "
  "the specification and passes all tests. You will NOT return anything except for the program.\n\n"
  "Question: {problem_description}\n\n"
  "You will use the following starter code to write the solution to the problem and enclose your code within "
  "delimiters as follows.\n"
  "```python\n{entry_point}\n```"
)


def _fence(code: str) -> str:
  return f"```python\n{code.rstrip()}\n```"


def format_test(test: TestCase) -> str:
  """Shows one test to the model: an input/output pair, or the test code."""
  if not test.code:
    return f"Input:\n{test.stdin or ''}\nExpected output:\n{test.expected_stdout or ''}"
  return _fence(test.code)


def _shows_call(question: str, name: str) -> bool:
  """Whether `question` writes `name(`: a signature such as the built-in task's "a function `f(x)` that ..."."""
  return re.search(rf"(?<!\w){re.escape(name)}\s*\(", question) is not None


def _name_the_tests_call(tests: Sequence[TestCase]) -> str:
  """The one name the test code reads without defining, importing or taking it from builtins ("" when there
  is not exactly one, or a test does not parse): what an assert-style test calls, e.g. `remove_occ` in
  `assert remove_occ("hello", "l") == "heo"`."""
  try:
    needed = [set(names_read_not_bound(ast.parse(test.code))) for test in tests]
  except SyntaxError:
    return ""
  names = {n for n in set().union(*needed) if not hasattr(builtins, n) and n not in sys.stdlib_module_names}
  return names.pop() if len(names) == 1 else ""


def _instruction(problem: Problem) -> str:
  """What to write: complete the starter code, define the tested function, or read stdin and print."""
  if problem.starter_code.strip():
    return f"{STARTER_CODE_INSTRUCTION}\n{_fence(problem.starter_code)}"
  if problem.entry_point:
    # The tests call the function by name; a question that does not show it (MBPP's "Write a function to ...")
    # gets the name, one that does (the built-in task's) is left as it is.
    if _shows_call(problem.statement, problem.entry_point):
      return ""
    return FUNCTION_INSTRUCTION.format(entry_point=problem.entry_point)
  if all(test.is_stdio for test in problem.tests):
    return STDIO_INSTRUCTION
  # Test code runs the program's definitions (a script reading stdin would fail it), by a name the question
  # may never say: the tests show it.
  name = _name_the_tests_call([test for test in problem.tests if not test.is_stdio])
  if name and not _shows_call(problem.statement, name):
    return CALLED_NAME_INSTRUCTION.format(name=name)
  return CODE_INSTRUCTION


def _lcb_release_prompt(problem: Problem) -> str:
  """The released LiveCodeBench user turn: the starter template when there is starter code, else the stdin
  template for a program judged on stdin/stdout (or not yet tested: synthesis prompts)."""
  if problem.starter_code.strip():
    return LCB_PROMPT_WITH_STARTER_CODE.format(problem_description=problem.question, entry_point=problem.starter_code)
  if not problem.entry_point and all(test.is_stdio for test in problem.tests):
    return LCB_PROMPT_WITHOUT_STARTER_CODE.format(problem_description=problem.question)
  # The released prompt has no wording for a function the tests call by a name no starter code shows.
  raise ValueError(
    f"problem {problem.task_id!r} is a function problem without starter code, which prompt style 'lcb_release' "
    "(the released LiveCodeBench prompt) cannot state: give it starter code, or use prompting.style 'project'"
  )


def format_user_prompt(problem: Problem, include_public_tests: bool = False, style: str = "project") -> str:
  """The user turn for `problem` in prompt style `style`.

  "project": the title and question, optional examples, then what to write: complete the starter code when there
  is one; else define `entry_point` when the question does not show its call; else, with only stdin/stdout tests
  (or none), read stdin and print the answer; else define the one name the test code calls (when there is one and
  the question does not show its call).

  "lcb_release": the released LiveCodeBench template for starter-code problems, or the one for stdin/stdout
  problems (also those without tests), with the question alone; any other problem is refused.

  Args:
    problem: the problem to state.
    include_public_tests: append `problem.public_tests` as worked examples (style "project" only).
    style: one of PROMPT_STYLES.

  Returns:
    The text of the user message.

  Raises:
    ValueError: an unknown style, an empty question, examples asked of style "lcb_release", or a problem it
      cannot state.
  """
  if style not in PROMPT_STYLES:
    raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
  # The released prompt shows the question alone; the project's puts the title first.
  if not (problem.question if style == "lcb_release" else problem.statement).strip():
    raise ValueError(f"problem {problem.task_id!r} has an empty question")
  if style == "lcb_release":
    if include_public_tests:
      raise ValueError("prompt style 'lcb_release' shows no examples (the released prompt has none)")
    return _lcb_release_prompt(problem)
  parts = [problem.statement.strip()]
  if include_public_tests and problem.public_tests:
    examples = "\n\n".join(f"Example {i + 1}:\n{format_test(t)}" for i, t in enumerate(problem.public_tests))
    parts.append(examples)
  instruction = _instruction(problem)
  if instruction:
    parts.append(instruction)
  return "\n\n".join(parts)


def problem_to_messages(
  problem: Problem,
  system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
  include_public_tests: bool = False,
  style: str = "project",
) -> Messages:
  """Chat messages asking for a solution to `problem`.

  Args:
    problem: the problem to state.
    system_prompt: the system message; None or "" leaves it out (for templates without a system role, and
      style "lcb_release").
    include_public_tests: append the public tests as examples.
    style: the user turn's prompt style, one of PROMPT_STYLES (`format_user_prompt`).

  Returns:
    `[{"role": "system", ...}, {"role": "user", ...}]` (without the system turn when it is left out).
  """
  messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
  messages.append({"role": "user", "content": format_user_prompt(problem, include_public_tests, style)})
  return messages


def make_chat_formatter(
  tokenizer: Tokenizer, add_generation_prompt: bool = True, **template_kwargs: Any
) -> Callable[[Sequence[dict]], str]:
  """A `format_chat(messages) -> str` that renders with the tokenizer's own chat template.

  Args:
    tokenizer: a tokenizer with a chat template.
    add_generation_prompt: open the assistant's turn at the end (what sampling needs).
    **template_kwargs: extra template variables, e.g. `enable_thinking=False` for Qwen3.
  """

  def format_chat(messages: Sequence[dict]) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, **template_kwargs)

  return format_chat


def problem_prompt(
  problem: Problem,
  format_chat: Callable[[Sequence[dict]], str],
  system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
  include_public_tests: bool = False,
  style: str = "project",
) -> str:
  """The full prompt string for `problem`: its messages rendered by `format_chat`."""
  return format_chat(problem_to_messages(problem, system_prompt, include_public_tests, style))
