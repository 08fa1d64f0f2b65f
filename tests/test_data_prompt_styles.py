"""Prompt styles: "project" (this project's wording, unchanged) and "lcb_release" (the SSD authors' released
LiveCodeBench prompt, apple/ml-ssd evaluation/benchmark.py: one user turn, the question without its title)."""

import dataclasses
import pathlib

import pytest
from pipeline_fixtures import context, micro_config, task_tokenizer_dir

from ssd_jax import config as config_lib
from ssd_jax.data import chat
from ssd_jax.data.livecodebench import load_livecodebench
from ssd_jax.data.problem_files import statement_key
from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.onpolicy.teacher_context import ContextChoice, TeacherTemplates, teacher_messages
from ssd_jax.tasks import builtin_problems

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "livecodebench_mini.jsonl"
STARTER = "class Solution:\n    def sumPositive(self, nums: List[int]) -> int:\n        "
# The released templates, written out here so that the constants in `chat` are checked against them.
HEAD = (
  "You will be given a question (problem specification) and will generate a correct Python program that matches "
  "the specification and passes all tests. You will NOT return anything except for the program.\n\nQuestion: "
)
RELEASED_STDIN = (
  HEAD + "The first line holds N, the second N integers. Print their sum, then their mean.\n\n"
  "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample "
  "inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the "
  "inputs, runs the algorithm and writes output to STDOUT.\n```python\n  # YOUR CODE HERE\n```"
)
RELEASED_STARTER = (
  HEAD + "Return the sum of the positive numbers in nums.\n\n"
  "You will use the following starter code to write the solution to the problem and enclose your code within "
  f"delimiters as follows.\n```python\n{STARTER}\n```"
)
# What the project style rendered before titles were a field of their own.
PROJECT_STDIN = (
  "Sum of a list\n\nThe first line holds N, the second N integers. Print their sum, then their mean.\n\n"
  "Example 1:\nInput:\n3\n1 2 3\n\nExpected output:\n6\n2\n\n\n"
  "Read the input from standard input and write the answer to standard output; do not hard-code the examples. "
  "Put the whole program in a single ```python code block."
)
PROJECT_STARTER = (
  "Sum of positives\n\nReturn the sum of the positive numbers in nums.\n\n"
  "Complete the following starter code; keep its signatures unchanged and put the whole solution in a single "
  "```python code block:\n```python\nclass Solution:\n    def sumPositive(self, nums: List[int]) -> int:\n```"
)


@pytest.fixture(scope="module")
def fixture_problems():
  return {p.task_id: p for p in load_livecodebench(str(FIXTURE))}


def test_released_prompt_is_one_user_turn_with_the_released_text(fixture_problems):
  for task_id, expected in (("lcb_fixture_abc_sum", RELEASED_STDIN), ("lcb_fixture_sum_positive", RELEASED_STARTER)):
    messages = chat.problem_to_messages(fixture_problems[task_id], system_prompt=None, style="lcb_release")
    assert messages == [{"role": "user", "content": expected}]
    assert fixture_problems[task_id].title not in expected  # The question alone, as the release shows it.


def test_project_prompt_of_livecodebench_problems_is_unchanged(fixture_problems):
  stdin, starter = fixture_problems["lcb_fixture_abc_sum"], fixture_problems["lcb_fixture_sum_positive"]
  assert chat.format_user_prompt(stdin, include_public_tests=True) == PROJECT_STDIN
  assert chat.problem_to_messages(starter) == [
    {"role": "system", "content": chat.DEFAULT_SYSTEM_PROMPT},
    {"role": "user", "content": PROJECT_STARTER},
  ]


def test_title_is_a_field_of_its_own(fixture_problems):
  problem = fixture_problems["lcb_fixture_abc_sum"]
  assert (problem.title, problem.question) == (
    "Sum of a list",
    "The first line holds N, the second N integers. Print their sum, then their mean.",
  )
  assert problem.statement == f"{problem.title}\n\n{problem.question}"
  # Duplicates and training/evaluation overlap are found by what a problem asks, whatever its title.
  assert statement_key(problem) == statement_key(dataclasses.replace(problem, title=""))


def test_problems_without_tests_get_the_stdin_template():
  text = chat.format_user_prompt(Problem(task_id="s", question="Q"), style="lcb_release")
  assert text == chat.LCB_PROMPT_WITHOUT_STARTER_CODE.format(problem_description="Q")


@pytest.mark.parametrize(
  "problem",
  [
    builtin_problems("eval", 1, seed=0)[0],
    Problem(task_id="mbpp/1", question="Write a function to add.", tests=(TestCase("t", code="assert add(1) == 2"),)),
  ],
  ids=["builtin", "mbpp"],
)
def test_function_problems_without_starter_code_are_refused(problem):
  with pytest.raises(ValueError, match=rf"{problem.task_id!r} is a function problem without starter code.*'project'"):
    chat.format_user_prompt(problem, style="lcb_release")


def test_released_style_refuses_examples_unknown_styles_and_empty_questions(fixture_problems):
  problem = fixture_problems["lcb_fixture_abc_sum"]
  with pytest.raises(ValueError, match="'lcb_release' shows no examples"):
    chat.format_user_prompt(problem, include_public_tests=True, style="lcb_release")
  with pytest.raises(ValueError, match=r"prompt style must be one of \('project', 'lcb_release'\), got 'paper'"):
    chat.format_user_prompt(problem, style="paper")
  with pytest.raises(ValueError, match="empty question"):
    chat.format_user_prompt(dataclasses.replace(problem, question=" "), style="lcb_release")


def test_config_refuses_unknown_styles_and_what_the_release_does_not_show():
  c = config_lib.base_config()
  c.prompting.style = "paper"
  with pytest.raises(config_lib.ConfigError, match=r"field 'prompting.style' = 'paper' is invalid: expected one of"):
    config_lib.validate(c)
  c.prompting.style, c.prompting.include_public_tests = "lcb_release", True
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(c)
  assert "field 'prompting.system_prompt' must be '' with field 'prompting.style' = 'lcb_release'" in str(error.value)
  assert "field 'prompting.include_public_tests' must be False" in str(error.value)
  c.prompting.system_prompt, c.prompting.include_public_tests = "", False
  config_lib.validate(c)


def test_run_prompts_and_teacher_contexts_use_the_configured_style(tmp_path, fixture_problems):
  config = micro_config("eval")
  config.tokenizer.path = task_tokenizer_dir(str(tmp_path))
  config.eval.problems.update(dict(source="jsonl", path=str(FIXTURE), num_problems=0))
  config.prompting.style = "lcb_release"
  ctx = context(config, tmp_path)
  prompts = ctx.prompts(config.eval.problems)
  by_id = dict(zip(prompts.task_ids, prompts.messages, strict=True))
  assert by_id["lcb_fixture_abc_sum"] == [{"role": "user", "content": RELEASED_STDIN}]
  assert by_id["lcb_fixture_sum_positive"] == [{"role": "user", "content": RELEASED_STARTER}]
  assert all(ctx.messages(p) == m for p, m in zip(prompts.problems, prompts.messages, strict=True))
  # The teacher's context wraps the released user turn as it wraps the project's.
  wrapped = teacher_messages(by_id["lcb_fixture_abc_sum"], ContextChoice(feedback="wrong"), TeacherTemplates())
  assert wrapped[0]["content"].startswith(RELEASED_STDIN + "\n\nYour previous attempt failed:\nwrong")
