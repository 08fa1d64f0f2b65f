"""Problem and test-case records shared by benchmarks, the sandbox, and the trainers."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TestCase:
  """One grading test.

  Attributes:
    name: label shown in reports and feedback.
    code: Python run after the solution in the same namespace; passes if it raises
      nothing (e.g. ``"assert add(1, 2) == 3"``). Empty for stdin/stdout tests.
    stdin: text fed to the program's standard input (stdio tests).
    expected_stdout: expected standard output, compared after whitespace
      normalisation by the parent process, never shown to the program. With ``code``
      set, only what ``code`` itself prints is compared.
  """

  __test__ = False  # not a pytest class

  name: str
  code: str = ""
  stdin: str | None = None
  expected_stdout: str | None = None

  def __post_init__(self):
    if not self.code and self.expected_stdout is None:
      raise ValueError(f"TestCase {self.name!r}: needs `code` or `expected_stdout`")

  @property
  def is_stdio(self) -> bool:
    """True when the program runs as a script and its output is compared."""
    return not self.code


@dataclasses.dataclass(frozen=True)
class Problem:
  """A code-generation problem.

  Attributes:
    task_id: unique id, e.g. ``"HumanEval/0"``.
    question: the problem statement, without its title.
    starter_code: code the answer must complete or keep (function signature, class).
    entry_point: the function under test, for functional problems.
    tests: the grading tests.
    difficulty: free-form label ("easy", "medium", ...) used for breakdowns.
    reference_solution: a known correct solution, if any.
    contest_date: ISO date (``YYYY-MM-DD``) of first publication, if known.
    public_tests: tests that may be shown in prompts (`prompting.include_public_tests`). Execution feedback
      covers every test in `tests`, as SDPO's code shows the failing test's input and expected output.
    program_prefix: code the grader puts before every program (LiveCodeBench's import prefix); not
      shown to the model.
    title: a short name shown before the question by the "project" prompt style (LiveCodeBench's
      `question_title`); the "lcb_release" style, as the released prompt, leaves it out.
  """

  task_id: str
  question: str
  starter_code: str = ""
  entry_point: str = ""
  tests: tuple[TestCase, ...] = ()
  difficulty: str = ""
  reference_solution: str = ""
  contest_date: str = ""
  public_tests: tuple[TestCase, ...] = ()
  program_prefix: str = ""
  title: str = ""

  @property
  def statement(self) -> str:
    """The title, a blank line and the question (the question alone without a title)."""
    return f"{self.title}\n\n{self.question}".strip() if self.title else self.question


def refuse_repeated_task_id(seen: dict[str, int], task_id: str, where: str, line_number: int) -> None:
  """Notes that `task_id` is defined on `line_number` (`where` is `file:line`); an id seen before is an error
  naming both lines.

  Results are keyed by task id, so the samples of two problems sharing one would be merged.
  """
  if task_id in seen:
    raise ValueError(f"{where}: task_id {task_id!r} repeats the one on line {seen[task_id]}")
  seen[task_id] = line_number
