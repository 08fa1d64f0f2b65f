"""A file replaced at the same path is a changed input: content digests in stage fingerprints."""

import json
import os
import shutil

import pytest
from pipeline_fixtures import micro_config

from ssd_jax import config as config_lib
from ssd_jax.pipeline import run_state, runner
from ssd_jax.pipeline.content_signature import content_signature


def _problem(task_id, question):
  return json.dumps({"task_id": task_id, "question": question, "tests": [{"code": "assert True"}]}) + "\n"


def test_the_digest_follows_bytes_names_and_sizes_not_paths_or_times(tmp_path):
  model = tmp_path / "model"
  model.mkdir()
  (model / "config.json").write_text('{"hidden_size": 8}')
  (model / "weights.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB.
  (model / ".cache").mkdir()
  (model / ".cache" / "lock").write_text("1")
  before = content_signature(str(model))
  copy = tmp_path / "copy"
  shutil.copytree(model, copy)
  (copy / ".cache" / "lock").write_text("2")  # Download caches and locks are not what the model is.
  assert content_signature(str(copy)) == before
  os.utime(copy / "weights.bin", (0, 0))
  assert content_signature(str(copy)) == before

  (copy / "weights.bin").write_bytes(bytes(range(256)) * 4095 + bytes(255) + b"\x01")  # One byte differs.
  assert content_signature(str(copy)) != before
  (copy / "weights.bin").write_bytes(bytes(range(256)) * 4096)
  assert content_signature(str(copy)) == before
  os.rename(copy / "weights.bin", copy / "other.bin")
  assert content_signature(str(copy)) != before
  assert content_signature(str(tmp_path / "nothing")) == "absent"


def test_a_large_file_is_sampled_through_its_length(tmp_path):
  path = tmp_path / "weights.safetensors"
  size = 100 << 20
  with open(path, "wb") as f:
    f.truncate(size)
  before = content_signature(str(path), whole_bytes=1 << 20)
  for offset in (10, (33 << 20) + 100, size - 1):  # Header, the sample 33 MiB in, the last byte.
    with open(path, "r+b") as f:
      f.seek(offset)
      f.write(b"\x07")
    changed = content_signature(str(path), whole_bytes=1 << 20)
    assert changed != before, offset
    before = changed


def test_a_problem_file_replaced_at_the_same_path_is_refused_until_restarted(tmp_path):
  ran = []
  stages = {name: (lambda ctx, name=name: ran.append(name)) for name in ("pretrain", "synthesize")}
  problems = tmp_path / "train.jsonl"
  problems.write_text(_problem("t/1", "Add two.") + _problem("t/2", "Sort a list."))
  config = micro_config("pretrain,synthesize")
  config.synthesize.problems.update(dict(source="jsonl", path=str(problems), num_problems=0))
  workdir = str(tmp_path / "run")

  def run(restart=()):
    runner.run(runner.prepare(config, workdir, stages), stages, restart=restart)

  run()
  with open(os.path.join(workdir, "stages", "synthesize.done.json")) as f:
    assert f"{json.load(f)['contents']['synthesize.problems.path']}" == content_signature(str(problems))
  run()
  assert ran == ["pretrain", "synthesize"]  # Same bytes: skipped.

  problems.write_text(_problem("t/1", "Add two.") + _problem("t/3", "Reverse a list."))
  with pytest.raises(
    config_lib.ConfigError,
    match=r"(?s)stage 'synthesize' finished .*what synthesize.problems.path = '.*train.jsonl' holds has changed",
  ):
    run()
  assert ran == ["pretrain", "synthesize"]
  run(restart=("synthesize",))
  assert ran == ["pretrain", "synthesize", "synthesize"]


def test_a_record_written_before_contents_were_kept_counts_as_unchanged(tmp_path):
  problems = tmp_path / "eval.jsonl"
  problems.write_text(_problem("e/1", "Add two."))
  config = micro_config("eval")
  config.eval.problems.update(dict(source="jsonl", path=str(problems), num_problems=0))
  records = run_state.StageRecords(str(tmp_path / "run"))
  fingerprint = records.fingerprint(config, "eval")
  assert set(fingerprint.contents) == {"eval.problems.path"}  # Empty paths (the default model) have none.
  old = fingerprint.record()
  del old["contents"]
  records.write("eval", "done", {**old, "outputs": []})
  problems.write_text(_problem("e/2", "Sort a list."))
  assert records.check("eval", records.fingerprint(config, "eval"))
