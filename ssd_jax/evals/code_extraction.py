"""From a model's completion to the program that runs in the sandbox."""

from __future__ import annotations

import ast
import re

from ssd_jax.data.problems import Problem

# An opening fence (``` or ~~~, optional language tag) through the matching closing fence, whose line may end
# in CRLF (`$` matches before the "\n" only).
_FENCE = re.compile(
  r"^(?P<indent>[ \t]*)(?P<fence>```|~~~)[^\n]*\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*\r?$", re.MULTILINE | re.DOTALL
)
# An opening fence with no closing fence: the completion was cut off mid-block.
_UNCLOSED_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?:```|~~~)[^\n]*\n(?P<body>.*)\Z", re.MULTILINE | re.DOTALL)


def extract_code(completion: str) -> str:
  """Returns the last fenced code block of a completion, else the completion itself.

  A block left open at the end (generation stopped mid-block) counts as the last block.
  Thinking-model output before ``</think>`` is ignored.
  """
  text = completion.rsplit("</think>", 1)[-1]
  blocks = [_block_code(m) for m in _FENCE.finditer(text)]
  tail = text[_last_fence_end(text) :]
  unclosed = _UNCLOSED_FENCE.search(tail)
  if unclosed is not None:
    return _block_code(unclosed)
  if blocks:
    return blocks[-1]
  return text


def _block_code(match: re.Match[str]) -> str:
  """A block's body less the opening fence's indentation (a block inside a list item), as Markdown reads it.

  Only up to that indentation goes, so a block of a function body (to follow a starter) keeps its own.
  """
  return re.sub(rf"^[ \t]{{0,{len(match.group('indent'))}}}", "", match.group("body"), flags=re.MULTILINE)


def _last_fence_end(text: str) -> int:
  end = 0
  for match in _FENCE.finditer(text):
    end = match.end()
  return end


def _defines_top_level(code: str, name: str) -> bool:
  try:
    tree = ast.parse(code)
  except SyntaxError:
    return False
  return any(
    isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name for node in tree.body
  )


def _parses(code: str) -> bool:
  try:
    ast.parse(code)
  except SyntaxError:
    return False
  return True


def assemble_program(problem: Problem, code: str) -> str:
  """Builds the program to run from extracted code.

  - Code that defines the entry point (or ``class Solution``) is a full answer: the
    starter code goes first when it is valid on its own (it may carry imports and
    helpers, as HumanEval prompts do), then the answer, whose definitions win.
  - Other code under a starter is a continuation of the starter (a function body).
  - Without a starter, the code is the whole program.
  """
  starter = problem.starter_code
  if not starter:
    return code
  names = [n for n in (problem.entry_point, "Solution") if n]
  if any(_defines_top_level(code, name) for name in names):
    return f"{starter.rstrip()}\n\n\n{code}" if _parses(starter) else code
  return starter + code
