"""Files a rerun parses or trusts are written whole or not at all: a kill mid-write leaves no torn file."""

import json
import os
import types

import pytest

from ssd_jax import process_group
from ssd_jax.atomic_write import atomic_open
from ssd_jax.evals.comparison_report import write_comparison
from ssd_jax.evals.splits import Split, write_split
from ssd_jax.pipeline import teacher_check


def test_atomic_open_keeps_the_previous_file_until_the_block_ends(tmp_path):
  path = tmp_path / "a.json"
  path.write_text("old")
  with pytest.raises(KeyboardInterrupt), atomic_open(path) as f:
    f.write("half")
    raise KeyboardInterrupt
  assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]
  with atomic_open(path) as f:
    f.write("new")
  assert path.read_text() == "new" and os.listdir(tmp_path) == ["a.json"]


def _killed_before_publishing(*args):
  raise KeyboardInterrupt


def test_split_and_comparison_appear_only_when_whole(tmp_path, monkeypatch):
  monkeypatch.setattr(os, "replace", _killed_before_publishing)
  with pytest.raises(KeyboardInterrupt):
    write_split(Split(("a",), ("b",), 0, 0.5), tmp_path / "split.json")
  with pytest.raises(KeyboardInterrupt):
    write_comparison({}, tmp_path / "report")
  for name in ("split.json", "report/comparison.json", "report/comparison.txt"):
    assert not (tmp_path / name).exists()


class _Prompts(list):
  def select(self, rows):
    return types.SimpleNamespace(problems=[], messages=[])


def test_teacher_diagnostic_torn_by_a_failure_is_measured_again(tmp_path, monkeypatch):
  results = [{"teacher": 1.0, "bad": object()}, {"teacher": 2.0}]  # The first fails halfway through json.dump.
  monkeypatch.setattr(teacher_check, "teacher_diagnostic", lambda inputs: results.pop(0))
  monkeypatch.setattr(teacher_check, "format_diagnostic", str)
  section = types.SimpleNamespace(
    diagnostic_problems=1, max_teacher_prompt_len=64, rollout=types.SimpleNamespace(max_new_tokens=8)
  )
  ctx = types.SimpleNamespace(
    config=types.SimpleNamespace(self_distill=section),
    layout=types.SimpleNamespace(teacher_diagnostic=str(tmp_path / "self_distill" / "teacher_diagnostic.json")),
    is_coordinator=True,
    process_group=process_group.single_process(),
  )
  cfg = types.SimpleNamespace(max_position_embeddings=128)

  def diagnose():
    return teacher_check.diagnose_teacher(ctx, None, None, cfg, _Prompts([None]), None, None)

  with pytest.raises(TypeError):
    diagnose()
  assert diagnose() == {"teacher": 2.0}
  assert json.loads((tmp_path / "self_distill" / "teacher_diagnostic.json").read_text()) == {"teacher": 2.0}
