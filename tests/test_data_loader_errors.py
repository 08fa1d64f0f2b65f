"""Problem files in the wrong shape fail with one line naming the file, the line and what is wrong."""

import json

import pytest

from ssd_jax.data import problem_files
from ssd_jax.data.livecodebench import load_livecodebench
from ssd_jax.evals.completions import load_completions

FIXTURE = "tests/fixtures/livecodebench_mini.jsonl"


def _first_fixture_record():
  with open(FIXTURE) as f:
    return json.loads(f.readline())


def _write(path, records):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
  return str(path)


def test_a_line_that_is_no_object_is_named(tmp_path):
  path = _write(tmp_path / "p.jsonl", ["5"])
  with pytest.raises(ValueError, match=r"p.jsonl:1: expected a JSON object, got int"):
    problem_files.load_problem_file(path)


def test_a_humaneval_file_given_as_a_problem_set_is_named_as_such(tmp_path):
  row = {"task_id": "H/0", "prompt": "def f():\n", "entry_point": "f", "test": "", "canonical_solution": "  pass\n"}
  path = _write(tmp_path / "he.jsonl", [row])
  with pytest.raises(ValueError, match=r"unknown fields .*a HumanEval file\? use source 'humaneval'"):
    problem_files.load_jsonl_problems(path)


def test_a_problem_set_read_as_humaneval_is_named_as_such(tmp_path):
  path = _write(tmp_path / "good.jsonl", [{"question": "Add two.", "tests": ["assert True"]}])
  with pytest.raises(ValueError, match=r"good.jsonl:1: not a HumanEval record: no \['task_id', 'prompt'"):
    problem_files.load_humaneval_problems(path)


@pytest.mark.parametrize(
  "change, message",
  [
    ({"metadata": "{bad"}, r"x.jsonl:1: metadata is not valid JSON"),
    (
      {"public_test_cases": json.dumps([{"input": "1", "testtype": "stdin"}])},
      r"test case public_0 has no \['output'\]",
    ),
  ],
)
def test_livecodebench_records_name_the_line(tmp_path, change, message):
  path = _write(tmp_path / "x.jsonl", [{**_first_fixture_record(), **change}])
  with pytest.raises(ValueError, match=message):
    load_livecodebench(path)


def test_a_directory_is_named_as_one_not_as_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"problem set '.*' is a directory, not a file"):
    problem_files.load_problem_file(str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"completions file '.*' is a directory, not a file"):
    load_completions(str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"problem set '.*nothing.jsonl' does not exist"):
    problem_files.load_problem_file(str(tmp_path / "nothing.jsonl"))
