"""From a model's completion to the program that runs in the sandbox."""

from __future__ import annotations

import ast
import re

from ssd_jax.data.problems import Problem

# An opening fence (``` or ~~~, optional language tag) through the matching closing fence.
_FENCE = re.compile(r"^[ \t]*(?P<fence>```|~~~)[^\n]*\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)
# An opening fence with no closing fence: the completion was cut off mid-block.
_UNCLOSED_FENCE = re.compile(r"^[ \t]*(?:```|~~~)[^\n]*\n(?P<body>.*)\Z", re.MULTILINE | re.DOTALL)


def extract_code(completion: str) -> str:
  """Returns the last fenced code block of a completion, else the completion itself.

  A block left open at the end (generation stopped mid-block) counts as the last block.
  Thinking-model output before ``</think>`` is ignored.
  """
  text = completion.rsplit("</think>", 1)[-1]
  blocks = [m.group("body") for m in _FENCE.finditer(text)]
  tail = text[_last_fence_end(text) :]
  unclosed = _UNCLOSED_FENCE.search(tail)
  if unclosed is not None:
    return unclosed.group("body")
  if blocks:
    return blocks[-1]
  return text


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
