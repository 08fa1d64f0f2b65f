"""LiveCodeBench code-generation problems from a user-supplied JSONL file.

Each line is one problem in the release format: ``question_id``, ``question_title``,
``question_content``, ``starter_code``, ``difficulty``, ``contest_date``, ``metadata``
(JSON with ``func_name`` for functional problems), ``public_test_cases`` (JSON list of
``{"input", "output", "testtype"}``) and ``private_test_cases`` (the same JSON, or
base64 of zlib of a pickled JSON string, as in the released files).

Grading follows LiveCodeBench's ``lcb_runner/evaluation/testing_util.py``: every program gets its import
prefix; functional problems compare return values (prints allowed); stdio output is compared line by
line (``verdicts.outputs_match``); each test has its own time limit (LiveCodeBench uses 6 s).
"""

from __future__ import annotations

import ast
import base64
import datetime
import io
import json
import pickle
import zlib
from collections.abc import Iterable

from ssd_jax.data.problems import Problem, TestCase, refuse_repeated_task_id
from ssd_jax.data.text_files import jsonl_records

# LiveCodeBench grades every program (stdio and functional) with this prefix in front: star imports of
# these modules, then of builtins and typing (so a starter's `List[int]` works), then the modules themselves.
_PREFIX_MODULES = (
  "string re datetime collections heapq bisect copy math random statistics itertools functools operator io sys json"
).split()
LCB_PROGRAM_PREFIX = (
  "".join(f"from {m} import *\n" for m in _PREFIX_MODULES + ["builtins", "typing"])
  + "".join(f"import {m}\n" for m in _PREFIX_MODULES)
  + "sys.setrecursionlimit(50000)\n\n"
)
LCB_TIMEOUT_S = 6.0  # LiveCodeBench's per-test time limit

# Trusted test code for a functional case: LiveCodeBench calls Solution().<func> (or a top-level <func>
# when there is no Solution class) on one JSON value per input line and compares the return value with
# the expected JSON value, a tuple counting as a list. What the program prints does not matter. The
# assertion puts the prediction after a line break: the expected value's repr has none, so `functional_got`
# finds where the prediction starts even when its repr contains ", got ".
_FUNCTIONAL_CHECK = """import json as _json
_inputs = [_json.loads(_line) for _line in {inputs!r}.split("\\n")]
_expected = _json.loads({output!r})
try:
  Solution
except NameError:
  _method = {func_name}
else:
  _method = getattr(Solution(), {func_name!r})
_prediction = _method(*_inputs)
if isinstance(_prediction, tuple):
  _prediction = list(_prediction)
_short = lambda value: repr(value) if len(repr(value)) <= 300 else repr(value)[:150] + " ... " + repr(value)[-150:]
assert _prediction == _expected, f"wrong answer: expected {{_short(_expected)}}\\ngot {{_short(_prediction)}}"
"""
_WRONG_ANSWER = "AssertionError: wrong answer: expected "


class _StringOnlyUnpickler(pickle.Unpickler):
  """Unpickles plain data only; the released files hold one pickled string."""

  def find_class(self, module, name):
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from test-case data")


def decode_test_cases(field: str | list) -> list[dict]:
  """Decodes a test-case field: a list, JSON text, or base64(zlib(pickle(JSON text)))."""
  if isinstance(field, list):
    return field
  if not field:
    return []
  try:
    return json.loads(field)
  except ValueError:
    pass
  try:
    payload = _StringOnlyUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(field)))).load()
  except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as exc:
    raise ValueError(f"test cases are neither JSON nor base64+zlib+pickle: {exc}") from exc
  return json.loads(payload) if isinstance(payload, (str, bytes)) else payload


def functional_test_io(code: str) -> tuple[str, str] | None:
  """The (inputs, expected output) JSON texts of a functional test's code (one JSON value per input line);
  None when `code` is not exactly the harness `_test_case` writes."""
  try:
    body = ast.parse(code).body
    inputs = body[1].value.generators[0].iter.func.value.value
    output = body[2].value.args[0].value
    func_name = body[3].handlers[0].body[0].value.id
  except (SyntaxError, AttributeError, IndexError, TypeError):
    return None
  # Re-rendering proves the parse: any other code, or other constants, would not give the same text.
  if _FUNCTIONAL_CHECK.format(inputs=inputs, output=output, func_name=func_name) != code:
    return None
  return inputs, output


def functional_got(message: str) -> str | None:
  """What a functional test's function returned (its repr, long ones shortened), read from the failed
  assertion's `message`; None when the message is not the harness's wrong-answer assertion."""
  start = message.find(_WRONG_ANSWER)
  if start < 0 or "\ngot " not in message[start:]:
    return None
  return message[start:].split("\ngot ", 1)[1]


def _test_case(name: str, case: dict, func_name: str, where: str) -> TestCase:
  missing = [k for k in ("input", "output") if not isinstance(case, dict) or not isinstance(case.get(k), str)]
  if missing:
    raise ValueError(f"{where}: test case {name} has no {missing} (a string each)")
  if case.get("testtype", "stdin") == "functional":
    if not func_name.isidentifier():
      raise ValueError(f"{name}: functional test needs metadata.func_name to be a name, got {func_name!r}")
    json.loads(case["output"])  # malformed expected values are an error of the file, found at load time
    return TestCase(
      name=name, code=_FUNCTIONAL_CHECK.format(inputs=case["input"], output=case["output"], func_name=func_name)
    )
  return TestCase(name=name, stdin=case["input"], expected_stdout=case["output"])


def livecodebench_problem(record: dict, where: str = "LiveCodeBench record") -> Problem:
  """Converts one LiveCodeBench record into a Problem.

  Args:
    record: one release-format record; its id is `question_id` (or `task_id`).
    where: names the record in error messages (e.g. `file.jsonl:12`).
  """
  if not isinstance(record, dict):
    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
  task_id = next((str(record[key]) for key in ("question_id", "task_id") if record.get(key) not in (None, "")), "")
  if not task_id:
    raise ValueError(f"{where}: no question_id (or task_id)")
  metadata = record.get("metadata") or {}
  if isinstance(metadata, str):
    try:
      metadata = json.loads(metadata) if metadata.strip() else {}
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: metadata is not valid JSON ({e.msg})") from None
  func_name = metadata.get("func_name", "")
  public = decode_test_cases(record.get("public_test_cases", []))
  private = decode_test_cases(record.get("private_test_cases", []))
  public_tests = tuple(_test_case(f"public_{i}", c, func_name, where) for i, c in enumerate(public))
  private_tests = tuple(_test_case(f"private_{i}", c, func_name, where) for i, c in enumerate(private))
  return Problem(
    task_id=task_id,
    question=record.get("question_content", ""),
    title=record.get("question_title") or "",
    starter_code=record.get("starter_code", "") or "",
    entry_point=func_name,
    tests=public_tests + private_tests,
    difficulty=str(record.get("difficulty", "")).lower(),
    contest_date=str(record.get("contest_date", ""))[:10],
    public_tests=public_tests,
    program_prefix=LCB_PROGRAM_PREFIX,
  )


def _parse_date(value: str | datetime.date | None, flag: str) -> datetime.date | None:
  if value is None or isinstance(value, datetime.date):
    return value
  try:
    return datetime.date.fromisoformat(value[:10])
  except ValueError as exc:
    raise ValueError(f"{flag}: expected YYYY-MM-DD, got {value!r}") from exc


def filter_problems(
  problems: Iterable[Problem],
  difficulties: Iterable[str] | None = None,
  start_date: str | datetime.date | None = None,
  end_date: str | datetime.date | None = None,
) -> list[Problem]:
  """Keeps problems of the given difficulties (any case) published within [start_date, end_date]."""
  wanted = {d.lower() for d in difficulties} if difficulties else None
  start, end = _parse_date(start_date, "start_date"), _parse_date(end_date, "end_date")
  kept = []
  for problem in problems:
    if wanted is not None and problem.difficulty.lower() not in wanted:
      continue
    if start or end:
      date = _parse_date(problem.contest_date, f"{problem.task_id} contest_date") if problem.contest_date else None
      if date is None or (start and date < start) or (end and date > end):
        continue
    kept.append(problem)
  return kept


def load_livecodebench(
  path: str, difficulties: Iterable[str] | None = None, start_date: str | None = None, end_date: str | None = None
) -> list[Problem]:
  """Loads a LiveCodeBench JSONL(.gz) file, filtered by difficulty and contest date.

  Raises:
    ValueError: a record is not JSON, has no id, or repeats an earlier record's id.
  """
  problems, seen = [], {}
  for where, line_number, record in jsonl_records(path):
    problem = livecodebench_problem(record, where)
    refuse_repeated_task_id(seen, problem.task_id, where, line_number)
    problems.append(problem)
  return filter_problems(problems, difficulties, start_date, end_date)
