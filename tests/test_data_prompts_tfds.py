"""Problem sources written as TFDS ArrayRecord datasets and read back through Grain."""

import json
import os
import sys

import grain
import pytest

from ssd_jax.data import problem_files, tfds_sources
from ssd_jax.data.problems import Problem, TestCase

PROBLEMS = [
  Problem(
    task_id="a/0",
    question="Add two numbers é ✓.",
    starter_code="def add(a, b):\n",
    entry_point="add",
    tests=(TestCase("t0", "assert add(1, 2) == 3"),),
    difficulty="easy",
    reference_solution="x",
    contest_date="2025-01-02",
  ),
  Problem(
    task_id="a/1",
    question="Echo.",
    tests=(
      TestCase("io", stdin="", expected_stdout=""),
      TestCase("io2", stdin="1\n", expected_stdout="1\n"),
      TestCase("printed", code="print(1)", expected_stdout="1"),
    ),
  ),
  Problem(task_id="a/2", question="No tests at all."),
  # A duplicate of a/0 after whitespace normalisation of question and starter code.
  Problem(task_id="a/3", question="  Add two numbers é ✓. ", starter_code="def  add(a, b):\n\n"),
  Problem(task_id="a/4", question="Public only.", public_tests=(TestCase("p", code="assert True", stdin="in"),)),
]


def test_round_trip_through_grain(tmp_path):
  built = tfds_sources.build_problem_dataset(PROBLEMS, tmp_path, "hand_made", deduplicate=False)
  assert built.num_problems == {"train": 5} and built.dedup is None
  assert os.path.isfile(os.path.join(built.path, "problem_set-train.array_record-00000-of-00001"))
  dataset = tfds_sources.load_problem_dataset(built.path)
  assert isinstance(dataset, grain.MapDataset)
  assert list(dataset) == PROBLEMS
  assert "tensorflow" not in sys.modules  # building and reading must not need TensorFlow


def test_dedup_during_build_and_if_exists(tmp_path):
  built = tfds_sources.build_problem_dataset(PROBLEMS, tmp_path, "dedup")
  assert built.dedup["train"].duplicates == (("a/3", "a/0"),)
  assert [p.task_id for p in tfds_sources.load_problem_dataset(built.path)] == ["a/0", "a/1", "a/2", "a/4"]
  with pytest.raises(FileExistsError, match="already exists"):
    tfds_sources.build_problem_dataset(PROBLEMS, tmp_path, "dedup")
  reused = tfds_sources.build_problem_dataset(PROBLEMS[:1], tmp_path, "dedup", if_exists="reuse")
  assert reused.num_problems == {"train": 4} and reused.path == built.path
  rebuilt = tfds_sources.build_problem_dataset(PROBLEMS[:2], tmp_path, "dedup", if_exists="overwrite")
  assert list(tfds_sources.load_problem_dataset(rebuilt.path)) == PROBLEMS[:2]


def test_splits_and_sharding_by_process(tmp_path):
  many = [Problem(task_id=f"p{i}", question=f"Problem number {i}.") for i in range(11)]
  built = tfds_sources.build_problem_dataset({"train": many, "test": many[:3]}, tmp_path, "split_set")
  assert list(tfds_sources.load_problem_dataset(built.path, "test")) == many[:3]
  shards = [
    list(tfds_sources.load_problem_dataset(built.path, shard_options=grain.sharding.ShardOptions(i, 3)))
    for i in range(3)
  ]
  assert shards == [many[0::3], many[1::3], many[2::3]]
  even = [
    list(
      tfds_sources.load_problem_dataset(
        built.path, shard_options=grain.sharding.ShardOptions(i, 3, drop_remainder=True)
      )
    )
    for i in range(3)
  ]
  assert [len(s) for s in even] == [3, 3, 3] and sorted(p.task_id for s in even for p in s) == sorted(
    p.task_id for p in many[:9]
  )
  # A single process (the test runs one) reads everything.
  solo = tfds_sources.load_problem_dataset(built.path, shard_options=grain.sharding.ShardByJaxProcess())
  assert list(solo) == many
  with pytest.raises(ValueError, match="no split 'validation'"):
    tfds_sources.load_problem_dataset(built.path, "validation")


def test_humaneval_source(tmp_path):
  built = tfds_sources.build_humaneval_source(tmp_path)
  assert built.num_problems == {"train": 164}
  assert list(tfds_sources.load_problem_dataset(built.path)) == problem_files.load_humaneval_problems()


def test_jsonl_source(tmp_path):
  rows = [problem_files.problem_to_dict(p) for p in PROBLEMS]
  path = tmp_path / "my-set.v1.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  built = tfds_sources.build_jsonl_source(path, tmp_path / "data", deduplicate=False)
  assert os.path.basename(os.path.dirname(built.path)) == "my_set"
  assert list(tfds_sources.load_problem_dataset(built.path)) == PROBLEMS


def test_builtin_task_source(tmp_path):
  builtin = pytest.importorskip("ssd_jax.tasks.builtin")
  problems = builtin.builtin_problems("eval", 6, seed=0)
  built = tfds_sources.build_problem_dataset(iter(problems), tmp_path, "builtin_eval", deduplicate=False)
  assert list(tfds_sources.load_problem_dataset(built.path)) == problems


def test_bad_inputs(tmp_path):
  with pytest.raises(ValueError, match="only letters, digits and underscores"):
    tfds_sources.build_problem_dataset(PROBLEMS, tmp_path, "bad/name")
  with pytest.raises(ValueError, match="has no problems"):
    tfds_sources.build_problem_dataset([], tmp_path, "empty")
  with pytest.raises(ValueError, match="if_exists"):
    tfds_sources.build_problem_dataset(PROBLEMS, tmp_path, "x", if_exists="maybe")
  with pytest.raises(FileNotFoundError, match="no TFDS dataset"):
    tfds_sources.load_problem_dataset(tmp_path / "nothing")
