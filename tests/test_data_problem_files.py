"""Prompt sources: JSONL and HumanEval parsing, de-duplication."""

import gzip
import json
import pathlib

import pytest

from ssd_jax.data import livecodebench, problem_files
from ssd_jax.data.problems import Problem, TestCase


def _problem(task_id, question, starter_code=""):
  return Problem(task_id=task_id, question=question, starter_code=starter_code)


def test_dedup_counts_on_hand_made_set():
  problems = [
    _problem("a", "Sum two numbers."),
    _problem("b", "  Sum two\n\tnumbers.  "),  # whitespace-only difference: duplicate of a
    _problem("c", "Sum two numbers!"),  # punctuation differs: kept
    _problem("d", "Sum two numbers.", "def f(): pass"),  # different starter code: kept
    _problem("e", "Sum  two numbers.\n"),  # duplicate of a
    _problem("f", "Reverse a string."),
    _problem("g", "Sum two numbers!"),  # duplicate of c
    _problem("h", "sum two numbers."),  # case differs: kept
  ]
  kept, report = problem_files.deduplicate_problems(iter(problems))
  assert [p.task_id for p in kept] == ["a", "c", "d", "f", "h"]
  assert (report.num_input, report.num_kept, report.num_dropped) == (8, 5, 3)
  assert report.duplicates == (("b", "a"), ("e", "a"), ("g", "c"))
  assert report.duplicated_ids == {"a": ["b", "e"], "c": ["g"]}
  assert report.summary() == "kept 5 of 8 problems, dropped 3 duplicates of 2 statements"


def test_dedup_matches_brute_force_pairwise_check():
  questions = ["x y", "x  y", "x\ny", "y x", " x y ", "xy", "y  x", "x y z"]
  problems = [_problem(str(i), q) for i, q in enumerate(questions)]
  kept, report = problem_files.deduplicate_problems(problems)
  # Brute force: a problem is dropped iff an earlier problem has the same whitespace-split word list.
  expected = [
    p.task_id
    for i, p in enumerate(problems)
    if not any(problems[j].question.split() == p.question.split() for j in range(i))
  ]
  assert [p.task_id for p in kept] == expected
  assert report.num_dropped == len(problems) - len(expected)


def test_jsonl_problem_set(tmp_path):
  rows = [
    {
      "task_id": "p1",
      "question": "Add.",
      "starter_code": "def add(a, b):\n",
      "entry_point": "add",
      "tests": ["assert add(1, 2) == 3", {"name": "big", "code": "assert add(10**9, 1) == 10**9 + 1"}],
      "public_tests": [{"stdin": "1 2\n", "expected_stdout": "3\n"}],
      "difficulty": "easy",
    },
    {"question": "Echo stdin.", "tests": [{"name": "t", "stdin": "", "expected_stdout": ""}]},
  ]
  path = tmp_path / "my_set.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in rows[:1]) + "\n\n" + json.dumps(rows[1]) + "\n")
  problems = problem_files.load_jsonl_problems(path)
  assert problems[0] == Problem(
    task_id="p1",
    question="Add.",
    starter_code="def add(a, b):\n",
    entry_point="add",
    difficulty="easy",
    tests=(TestCase("test_0", "assert add(1, 2) == 3"), TestCase("big", "assert add(10**9, 1) == 10**9 + 1")),
    public_tests=(TestCase("test_0", stdin="1 2\n", expected_stdout="3\n"),),
  )
  assert problems[1] == Problem(
    task_id="my_set/3", question="Echo stdin.", tests=(TestCase("t", stdin="", expected_stdout=""),)
  )
  assert [problem_files.problem_from_dict(problem_files.problem_to_dict(p)) for p in problems] == problems
  gz = tmp_path / "my_set.jsonl.gz"
  with gzip.open(gz, "wt", encoding="utf-8") as f:
    f.write(path.read_text())
  assert problem_files.load_jsonl_problems(gz) == problems


@pytest.mark.parametrize(
  "line, message",
  [
    ('{"task_id": "x"}', r"bad.jsonl:1: 'question' must be a non-empty string"),
    ('{"question": "q", "source": "web"}', r"unknown fields \['source'\]"),
    ('{"question": "q", "tests": [{"input": "1"}]}', r"tests\[0\]: unknown test fields \['input'\]"),
    ('{"question": "q", "tests": "assert 1"}', r"'tests' must be a list"),
    ("{not json", r"bad.jsonl:1: not valid JSON"),
  ],
)
def test_jsonl_errors_name_the_problem(tmp_path, line, message):
  path = tmp_path / "bad.jsonl"
  path.write_text(line + "\n")
  with pytest.raises(ValueError, match=message):
    problem_files.load_jsonl_problems(path)


def test_jsonl_extra_fields_allowed_when_asked(tmp_path):
  path = tmp_path / "extra.jsonl"
  path.write_text('{"question": "q", "source": "web"}\n')
  assert problem_files.load_jsonl_problems(path, allow_extra_fields=True)[0].question == "q"
  with pytest.raises(FileNotFoundError):
    problem_files.load_jsonl_problems(tmp_path / "missing.jsonl")


def test_humaneval_problems_pass_their_own_tests():
  problems = problem_files.load_humaneval_problems()
  assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
  assert len({p.task_id for p in problems}) == 164
  for problem in problems[:3]:
    namespace = {}
    exec(problem.reference_solution + "\n" + problem.tests[0].code, namespace)  # pylint: disable=exec-used
    assert problem.starter_code in problem.reference_solution
    broken = problem.starter_code + "    pass\n"
    with pytest.raises(AssertionError):
      exec(broken + "\n" + problem.tests[0].code, {})  # pylint: disable=exec-used
  _, report = problem_files.deduplicate_problems(problems)
  assert report.num_dropped == 0


def test_difficulty_filter_ignores_case_in_jsonl_and_livecodebench(tmp_path):
  rows = [
    {"task_id": "e", "question": "q", "difficulty": "Easy"},
    {"task_id": "h", "question": "q", "difficulty": "HARD"},
    {"task_id": "m", "question": "q", "difficulty": "medium"},
  ]
  path = tmp_path / "set.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  problems = problem_files.load_problem_file(str(path))
  assert [p.difficulty for p in problems] == ["easy", "hard", "medium"]  # As LiveCodeBench's are.
  for wanted in (["Easy"], ["easy"], ["EASY"]):
    assert [p.task_id for p in problem_files.load_problem_file(str(path), difficulties=wanted)] == ["e"]
  assert [p.task_id for p in problem_files.load_problem_file(str(path), difficulties=["hard", "Medium"])] == ["h", "m"]
  fixture = pathlib.Path(__file__).parent / "fixtures" / "livecodebench_mini.jsonl"
  lcb = problem_files.load_problem_file(str(fixture), difficulties=["Medium"])
  assert [p.task_id for p in lcb] == ["lcb_fixture_split_parity"]
  # Problems made elsewhere (a TFDS set written before labels were lower-cased) are filtered alike.
  made = [_problem("x", "q"), Problem(task_id="y", question="q", difficulty="Easy")]
  assert [p.task_id for p in livecodebench.filter_problems(made, ["easy"])] == ["y"]
