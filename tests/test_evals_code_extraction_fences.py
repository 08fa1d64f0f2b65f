"""Where fenced blocks open and close: a fence at the end of a line of code, and degenerate completions that must
not take quadratic time."""

import time

import pytest

from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.evals.code_extraction import extract_code
from ssd_jax.evals.code_fences import fenced_blocks
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.sandbox import SandboxLimits

F = "```"
ADD = "def add_one(x):\n    return x + 1\n"
# The fence written at the end of the last line of code, as models sometimes do.
ADD_FENCED = f"def add_one(x):\n    return x + 1{F}\n"
ADD_FENCED_CRLF = ADD_FENCED.replace("\n", "\r\n")
ADD_CRLF = "def add_one(x):\r\n    return x + 1\n"  # the line the fence ended gets a newline of its own
ADD_STRING_COMMENT = "def add_one(x):\n    return x + len('```') - 2  # one more\n"
# Fences at line ends inside string literals or comments: they are text, not the end of the block.
ADD_DOC = f'def add_one(x):\n    """Returns x + 1.\n\n    Markdown wraps code in {F}\n    """\n    return x + 1\n'
ADD_TABLE = f'FENCE = """{F}\nx\n"""\n\n\ndef add_one(x):\n    return x + len(FENCE) - 5\n'

# (id, completion, code graded given the problem, code graded without it).
AT_LINE_END = [
  ("last_line", f"{F}python\n{ADD_FENCED}\nThis adds one.\n", ADD, ADD),
  ("then_usage", f"{F}python\n{ADD_FENCED}Usage:\n{F}python\nprint(add_one(1))\n{F}\n", ADD, "print(add_one(1))\n"),
  ("longer_fence_and_blanks", f"{F}python\n{ADD.rstrip()} ```` \n", ADD, ADD),
  ("tildes", f"~~~python\n{ADD.rstrip()}~~~\n", ADD, ADD),
  ("crlf", f"{F}python\r\n{ADD_FENCED_CRLF}", ADD_CRLF, ADD_CRLF),
  ("list_item", f"1. Code:\n   {F}python\n   def add_one(x):\n       return x + 1{F}\n", ADD, ADD),
]
AS_TEXT = [
  ("docstring", f"{F}python\n{ADD_DOC}{F}\n", ADD_DOC),
  ("string_opened_before_the_fence", f"{F}python\n{ADD_TABLE}{F}\n", ADD_TABLE),
  # In a comment a fence may be prose ("see ```"): closing there would lose the code after it.
  (
    "after_a_string_and_a_comment",
    f"{F}python\n{ADD_STRING_COMMENT.rstrip()}{F}\n",
    f"{ADD_STRING_COMMENT.rstrip()}{F}\n",
  ),
  ("comment_before_more_code", f"{F}python\nimport math  # see {F}\n{ADD}{F}\n", f"import math  # see {F}\n{ADD}"),
  ("one_quote_string", f"{F}python\nFENCE = '{F}\n{F}\n", f"FENCE = '{F}\n"),
  ("fence_mid_line", f'{F}python\ns = "{F}" + "x"\n{F}\n', f's = "{F}" + "x"\n'),
  ("too_short", f"{F}python\nx = 1 ``\n{F}\n", "x = 1 ``\n"),
]


@pytest.fixture(scope="module")
def add_problem():
  return Problem("add", "add", "", "add_one", (TestCase("t", code="assert add_one(1) == 2\n"),))


@pytest.mark.parametrize("completion,expected,_", [c[1:] for c in AT_LINE_END], ids=[c[0] for c in AT_LINE_END])
def test_a_fence_ending_a_line_of_code_closes_the_block(add_problem, completion, expected, _):
  assert extract_code(completion, add_problem) == expected


@pytest.mark.parametrize("completion,_,expected", [c[1:] for c in AT_LINE_END], ids=[c[0] for c in AT_LINE_END])
def test_a_fence_ending_a_line_of_code_without_a_problem(completion, _, expected):
  assert extract_code(completion) == expected


@pytest.mark.parametrize("completion,expected", [c[1:] for c in AS_TEXT], ids=[c[0] for c in AS_TEXT])
def test_a_fence_ending_a_line_inside_a_string_or_a_comment_is_text(add_problem, completion, expected):
  assert extract_code(completion, add_problem) == extract_code(completion) == expected


def test_fences_ending_lines_close_blocks_only_inside_them():
  # Prose that ends in a fence opens nothing; a line of code after an opening fence ends the block.
  assert fenced_blocks(f"Wrap it in {F}\nx = 1{F}\n") == []
  (block,) = fenced_blocks(f"{F}python\nx = 1{F}\n")
  assert (block.body, block.closed, block.end) == ("x = 1\n", True, len(f"{F}python\nx = 1{F}"))


def test_a_block_left_open_keeps_the_fences_in_its_strings():
  # The block is cut off inside a string; the fences ending lines after it close no block of their own.
  completion = f'{F}python\nDOC = """\nSee {F}\n{F}python\ny = 1{F}\n'
  assert [(b.start, b.closed) for b in fenced_blocks(completion)] == [(0, False)]


def test_verdicts(add_problem):
  completions = {"add": [c[1] for c in AT_LINE_END + AS_TEXT]}
  limits = SandboxLimits(timeout_s=10, cpu_time_s=10)
  result = evaluate([add_problem], completions, limits=limits, workers=2)
  assert [s.passed for s in result.problems[0].samples] == [True] * len(AT_LINE_END + AS_TEXT[:4]) + [False] * 3


@pytest.mark.parametrize(
  "completion,expected",
  [
    # Openings that nothing closes: the first is the block left open (the old regular expressions scanned the
    # rest of the text from each: 78 s).
    (f"{F}python\n" * 20_000, f"{F}python\n" * 19_999),
    # A long run of blanks (read once per blank by the old opening fence's indentation: 78 s).
    (" " * 50_000 + "x\n", " " * 50_000 + "x\n"),
    # Blocks closed by fences at line ends that do not parse, each read on through the closing fences after it
    # (scanned for to the end of the text: 150 s; then, with closing fences at the end, parsed up to them).
    (f"{F}python\nx = ({F}\n" * 20_000, "x = (\n"),
    (f"{F}python\nx = ({F}\n" * 20_000 + f"{F}\n" * 3, ""),
  ],
  ids=["unclosed_openings", "long_blank_run", "unparsable_blocks", "unparsable_blocks_then_closing_fences"],
)
def test_degenerate_completions_take_linear_time(add_problem, completion, expected):
  start = time.perf_counter()
  assert extract_code(completion, add_problem) == expected
  assert time.perf_counter() - start < 5  # under 1 s on one core
