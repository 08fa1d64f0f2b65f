"""Problem ids are unique: the loaders refuse a file that repeats one, and `evaluate` refuses repeated ids."""

import gzip
import json

import pytest

from ssd_jax.data import livecodebench, problem_files
from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.evals.evaluate import evaluate


def _write_lines(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def _lcb_record(question_id, content="Print 1."):
  record = {"question_content": content, "public_test_cases": json.dumps([{"input": "", "output": "1"}])}
  if question_id is not None:
    record["question_id"] = question_id
  return record


def test_jsonl_problem_set_refuses_a_repeated_task_id(tmp_path):
  path = _write_lines(tmp_path / "set.jsonl", [{"task_id": "p", "question": "a"}, {"task_id": "p", "question": "b"}])
  for load in (problem_files.load_jsonl_problems, problem_files.load_problem_file):
    with pytest.raises(ValueError, match=rf"{path}:2: task_id 'p' repeats the one on line 1"):
      load(path)


def test_jsonl_default_ids_may_not_collide_with_given_ones(tmp_path):
  # The second line's default id is "set/2", which the first line already took.
  path = _write_lines(tmp_path / "set.jsonl", [{"task_id": "set/2", "question": "a"}, {"question": "b"}])
  with pytest.raises(ValueError, match=r"task_id 'set/2' repeats"):
    problem_files.load_jsonl_problems(path)


def test_livecodebench_refuses_a_repeated_question_id(tmp_path):
  path = _write_lines(tmp_path / "lcb.jsonl", [_lcb_record("abc1_a"), _lcb_record("abc1_b"), _lcb_record("abc1_a")])
  for load in (livecodebench.load_livecodebench, problem_files.load_problem_file):
    with pytest.raises(ValueError, match=rf"{path}:3: task_id 'abc1_a' repeats the one on line 1"):
      load(path)


@pytest.mark.parametrize("question_id", [None, ""])
def test_livecodebench_record_without_an_id_is_an_error_naming_its_line(tmp_path, question_id):
  path = _write_lines(tmp_path / "lcb.jsonl", [_lcb_record("abc1_a"), _lcb_record(question_id)])
  with pytest.raises(ValueError, match=rf"{path}:2: no question_id"):
    problem_files.load_problem_file(path)
  with pytest.raises(ValueError, match=r"^LiveCodeBench record: no question_id"):
    livecodebench.livecodebench_problem(_lcb_record(question_id))


def test_livecodebench_task_id_field_stands_in_for_question_id():
  assert livecodebench.livecodebench_problem({**_lcb_record(None), "task_id": "t1"}).task_id == "t1"
  assert livecodebench.livecodebench_problem(_lcb_record(3001)).task_id == "3001"


def test_humaneval_file_refuses_a_repeated_task_id(tmp_path):
  row = {"task_id": "H/0", "prompt": "def f():\n", "canonical_solution": "  pass\n", "entry_point": "f"}
  row["test"] = "def check(f):\n  pass\n"
  path = tmp_path / "he.jsonl.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n\n" + json.dumps(row) + "\n")
  with pytest.raises(ValueError, match=rf"{path}:3: task_id 'H/0' repeats the one on line 1"):
    problem_files.load_humaneval_problems(path)


def test_evaluate_refuses_problems_sharing_a_task_id():
  tests = (TestCase("t", "assert True"),)
  problems = [Problem("x", "First.", tests=tests), Problem("y", "Other.", tests=tests), Problem("x", "Second.")]
  # The id is refused before any sandbox is started; otherwise both problems' samples would be merged.
  with pytest.raises(ValueError, match=r"task_id 'x' names more than one problem"):
    evaluate(problems, {"x": ["pass"]})
