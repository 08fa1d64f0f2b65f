"""Decisions process 0 makes for the group: every process gets the same value, or the same failure at once.

Two processes are played in turn in one: process 0 runs first and what it sends is what process 1 receives.
"""

import json
import os
import pathlib
import threading
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.multihost import multihost as orbax_multihost

from ssd_jax import process_group
from ssd_jax.config import base_config
from ssd_jax.evals import grid_runs
from ssd_jax.evals.protocol import DecodingSetting
from ssd_jax.evals.report import SUMMARY_FILE
from ssd_jax.evals.shared_sandbox import _decode, _encode
from ssd_jax.evals.verdicts import TestRun, Verdict
from ssd_jax.pipeline import teacher_check
from ssd_jax.pipeline.checkpoint_export import export_step
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.stages import eval as eval_stage
from ssd_jax.train import checkpoint_items
from ssd_jax.train.checkpoint_resume import restore_or_init
from ssd_jax.train.checkpointing import Checkpointer
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.train_state import init_train_state


class Wire:
  """Process 0's payloads, kept for process 1 (which must gather as many times, in the same order)."""

  def __init__(self):
    self.sent = []

  def group(self, index: int) -> process_group.ProcessGroup:
    def allgather(payload: bytes) -> list[bytes]:
      if index == 0:
        self.sent.append(payload)
        return [payload, b""]
      return [self.sent.pop(0), payload]

    return process_group.ProcessGroup(index, 2, allgather)


def test_a_result_json_cannot_hold_stops_every_process_with_the_reason():
  wire = Wire()
  with pytest.raises(TypeError):
    process_group.on_coordinator(wire.group(0), lambda: {(3, 6): "a tuple key"})
  with pytest.raises(process_group.PeerError, match="process 0 stopped the run: TypeError"):
    process_group.on_coordinator(wire.group(1), lambda: pytest.fail("only process 0 runs the work"))


def test_every_process_holds_the_same_value():
  wire = Wire()
  value = {"steps": (3, 6), "where": pathlib.Path("/runs/a")}
  on_0 = process_group.on_coordinator(wire.group(0), lambda: value)
  on_1 = process_group.on_coordinator(wire.group(1), lambda: pytest.fail("only process 0 runs the work"))
  assert on_0 == on_1 == {"steps": [3, 6], "where": "/runs/a"}


def _state():
  return init_train_state({"w": jnp.arange(4.0)}, make_optimizer(OptimizerConfig(1e-3, 1e-4, 1, 10)))


def test_a_host_with_a_stale_view_of_the_checkpoints_resumes_where_process_0_does(tmp_path, monkeypatch):
  state = _state()
  with Checkpointer(tmp_path / "checkpoints", async_save=False) as checkpointer:
    for step in (3, 6):
      checkpointer.save(step, state.replace(step=jnp.int32(step)), data_state={"position": step})
  wire = Wire()
  resumed = []
  for index in (0, 1):
    monkeypatch.setattr(process_group, "current", lambda index=index: wire.group(index))
    with Checkpointer(tmp_path / "checkpoints", async_save=False) as checkpointer:
      if index == 1:  # Stale network-mount metadata: step 6 is not listed yet.
        monkeypatch.setattr(checkpointer, "all_steps", lambda: [3])
        monkeypatch.setattr(checkpointer, "latest_step", lambda: 3)
      restored = restore_or_init(checkpointer, state, with_data=True)
    resumed.append((int(jax.device_get(restored.state.step)), restored.data_state))
  assert resumed == [(6, {"position": 6})] * 2 and not wire.sent


def test_a_failed_set_aside_stops_every_process_with_the_reason(tmp_path, monkeypatch):
  wire = Wire()
  with Checkpointer(tmp_path / "checkpoints", async_save=False) as checkpointer:
    monkeypatch.setattr(process_group, "current", lambda: wire.group(0))
    with pytest.raises(FileNotFoundError):
      checkpointer.set_aside([6])  # There is no step 6 to move.
    monkeypatch.setattr(process_group, "current", lambda: wire.group(1))
    with pytest.raises(process_group.PeerError, match="FileNotFoundError"):
      checkpointer.set_aside([6])


def test_every_process_is_told_where_process_0_set_the_steps_aside(tmp_path, monkeypatch):
  for step in (6, 9):
    (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
  (tmp_path / "checkpoints.broken" / "6").mkdir(parents=True)  # Set aside before: this one goes next to it.
  wire = Wire()
  with Checkpointer(tmp_path / "checkpoints", async_save=False) as checkpointer:
    places = []
    for index in (0, 1):
      monkeypatch.setattr(process_group, "current", lambda index=index: wire.group(index))
      places.append(checkpointer.set_aside([9, 6]))
  broken = tmp_path / "checkpoints.broken"
  assert places == [[str(broken / "9"), str(broken / "6.2")]] * 2
  assert (broken / "9").is_dir() and (broken / "6.2").is_dir()


def test_hosts_re_read_the_checkpoints_only_after_every_step_is_set_aside(tmp_path, monkeypatch):
  for step in (6, 9):
    (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
  wire = Wire()
  with Checkpointer(tmp_path / "checkpoints", async_save=False) as checkpointer:
    monkeypatch.setattr(process_group, "current", lambda: wire.group(0))
    reloads = []
    monkeypatch.setattr(
      checkpointer._manager, "reload", lambda: reloads.append(sorted(os.listdir(tmp_path / "checkpoints")))
    )
    checkpointer.set_aside([9, 6])
  assert reloads == [[]]  # One re-reading, after both moves: none while process 0 was still moving steps.


def _eval_ctx(root: pathlib.Path, group: process_group.ProcessGroup, **eval_fields) -> types.SimpleNamespace:
  """The eval stage's view of one process, reading its files under `root` (each host its own view)."""
  config = base_config()
  config.eval.update(eval_fields)
  return types.SimpleNamespace(
    config=config,
    layout=types.SimpleNamespace(eval_root=str(root / "eval"), training_checkpoints=lambda name: str(root / name)),
    is_coordinator=group.index == 0,
    sync=lambda name: None,
    sandbox_limits=None,
    sandbox_workers=1,
    sandbox_allow_weak=True,
    seed=0,
    process_group=group,
  )


def test_every_process_evaluates_the_checkpoints_process_0_sees(tmp_path):
  for step in (10, 20, 30):
    (tmp_path / "p0" / "student" / str(step) / "state").mkdir(parents=True)
  wire = Wire()
  found = [
    eval_stage.checkpoints_of(_eval_ctx(tmp_path / f"p{i}", wire.group(i), checkpoints="all"), "student")
    for i in (0, 1)
  ]
  assert found == [[("final", None), ("step_20", 20), ("step_10", 10)]] * 2


@pytest.mark.parametrize("seen", [eval_stage.DONE_FILE, eval_stage.COMPLETIONS_FILE])
def test_every_process_resumes_a_candidate_as_process_0_sees_it(tmp_path, monkeypatch, seen):
  setting = DecodingSetting(temperature=1.0)
  out = grid_runs.run_dir(tmp_path / "p0" / "eval", "base", "final", setting, "dev")
  out.mkdir(parents=True)
  (out / seen).touch()
  graded = []

  def score_completions(*args, group, **kwargs):
    graded.append(group.index)
    return None, {"pass_at_k": {}, "num_problems": 0}

  monkeypatch.setattr(eval_stage, "load_completions", lambda path: [])
  monkeypatch.setattr(eval_stage, "score_completions", score_completions)
  monkeypatch.setattr(eval_stage, "write_report", lambda *args: None)

  def load_model():  # Sampling runs device collectives: one host sampling while another grades would hang both.
    pytest.fail("loaded the model to sample what process 0 has")

  wire = Wire()
  prompts = types.SimpleNamespace(problems=[])
  for i in (0, 1):
    eval_stage.evaluate_candidate(
      _eval_ctx(tmp_path / f"p{i}", wire.group(i)), load_model, prompts, "base", "final", setting, "dev"
    )
  assert graded == ([] if seen == eval_stage.DONE_FILE else [0, 1])


def test_every_process_tests_the_candidate_process_0_chose(tmp_path):
  cold, hot = DecodingSetting(temperature=0.5), DecodingSetting(temperature=1.0)
  for setting, correct in ((cold, 1), (hot, 3)):
    dev = grid_runs.run_dir(tmp_path / "p0" / "eval", "base", "final", setting, "dev")
    dev.mkdir(parents=True)
    (dev / SUMMARY_FILE).write_text(json.dumps({"per_problem": [{"task_id": "a", "n": 4, "c": correct}]}))
  wire = Wire()
  chosen = [
    eval_stage.chosen_candidates(
      _eval_ctx(tmp_path / f"p{i}", wire.group(i), tune_pass_at_n=False), "base", ["final"], [cold, hot], ["a"]
    )
    for i in (0, 1)
  ]
  assert chosen == [[("final", hot, "by dev pass@1 (75.0)")]] * 2
  assert grid_runs.read_selection(tmp_path / "p0" / "eval", "base")["best"] == f"final/{hot.label}"


def test_a_host_that_does_not_see_a_step_export_yet_reuses_it_with_process_0(tmp_path):
  layout = RunLayout(str(tmp_path))
  out = pathlib.Path(layout.model_at_step("ssd", 2))
  out.mkdir(parents=True)
  (out / "config.json").write_text("{}")
  wire = Wire()

  def context(index):
    def load_model(directory):
      pytest.fail("the step is exported already: no process exports it again")

    return types.SimpleNamespace(layout=layout, load_model=load_model, process_group=wire.group(index))

  assert export_step(context(0), "ssd", 2) == str(out)
  (out / "config.json").unlink()  # Process 1's stale view: the export is not there yet.
  assert export_step(context(1), "ssd", 2) == str(out)


def test_a_host_that_does_not_see_the_teacher_diagnostic_yet_reads_process_0s(tmp_path, monkeypatch):
  path = tmp_path / "teacher_diagnostic.json"
  recorded = {"student": 0.25, "feedback_problems": 0}
  path.write_text(json.dumps(recorded))
  wire = Wire()

  def context(index):
    # No sampler: a host that measured the diagnostic again would fail here.
    return types.SimpleNamespace(
      config=types.SimpleNamespace(self_distill=None),
      layout=types.SimpleNamespace(teacher_diagnostic=str(path)),
      process_group=wire.group(index),
    )

  monkeypatch.setattr(teacher_check, "format_diagnostic", str)
  diagnose = lambda ctx: teacher_check.diagnose_teacher(ctx, None, None, None, None, None, None)
  assert diagnose(context(0)) == recorded
  path.unlink()  # Process 1's stale view.
  assert diagnose(context(1)) == recorded


def test_a_host_that_cannot_read_a_saved_state_raises_after_orbaxs_barrier(tmp_path, monkeypatch):
  with Checkpointer(tmp_path, async_save=False) as checkpointer:
    checkpointer.save(4, _state().replace(step=jnp.int32(4)))
  barriers = []
  monkeypatch.setattr(orbax_multihost, "sync_global_processes", lambda name, **kwargs: barriers.append(name))
  wire = Wire()
  on_0 = checkpoint_items.read_state(wire.group(0), tmp_path, 4)
  assert int(on_0["step"]) == 4 and len(barriers) == 1
  restore = ocp.StandardCheckpointHandler.restore

  def unreadable(self, directory, args=None):
    raise OSError(f"{directory}: chunk unreadable")

  # Process 1 cannot read its shards: it must reach the barrier process 0 waits at before it raises.
  monkeypatch.setattr(ocp.StandardCheckpointHandler, "restore", unreadable)
  with pytest.raises(OSError, match="chunk unreadable"):
    checkpoint_items.read_state(wire.group(1), tmp_path, 4)
  assert len(barriers) == 2
  monkeypatch.setattr(ocp.StandardCheckpointHandler, "restore", restore)
  # A host that does not see the step says so before Orbax's barrier, in an exchange every host makes.
  wire = Wire()
  checkpoint_items.read_state(wire.group(0), tmp_path, 4)
  with pytest.raises(FileNotFoundError, match="process 1 does not see"):
    checkpoint_items.read_state(wire.group(1), tmp_path / "elsewhere", 4)


@pytest.mark.parametrize("length", [0, 1, 7, 8, 100])
def test_jax_allgather_of_one_process_returns_its_payload_across_chunks(monkeypatch, length):
  monkeypatch.setattr(process_group, "ALLGATHER_CHUNK_BYTES", 7)
  payload = bytes(range(length))
  assert process_group._jax_allgather(payload) == [payload]


class TwoProcessGather:
  """`process_allgather` for two processes played by two threads; it records what each one gathers."""

  def __init__(self):
    self.barrier = threading.Barrier(2, timeout=30)
    self.sent = [None, None]
    self.calls = [[], []]
    self.local = threading.local()

  def __call__(self, x):
    index = self.local.index
    self.calls[index].append(np.shape(x))
    self.sent[index] = np.asarray(x)
    self.barrier.wait()
    gathered = np.stack(self.sent)  # like JAX, only arrays of one shape gather
    self.barrier.wait()
    return gathered

  def run(self, index, payload, results):
    self.local.index = index
    results[index] = process_group._jax_allgather(payload)


def test_jax_allgather_of_two_processes_gathers_each_payload_whole_in_the_same_steps(monkeypatch):
  monkeypatch.setattr(process_group, "ALLGATHER_CHUNK_BYTES", 7)
  gather = TwoProcessGather()
  monkeypatch.setattr(process_group.multihost_utils, "process_allgather", gather)
  payloads = [bytes(range(1, 31)), bytes(range(100, 103))]
  results = [None, None]
  threads = [threading.Thread(target=gather.run, args=(i, p, results)) for i, p in enumerate(payloads)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(60)
  assert results == [payloads, payloads]
  assert gather.calls[0] == gather.calls[1] == [(8,)] + [(7,)] * 4 + [(2,)]


def test_shared_verdicts_travel_as_utf8():
  text = "\x00\x01\x1b\t\n\u2028é漢字😀"
  runs = [(TestRun("t", Verdict.FAILED, message=text, stdout=text, stderr=text),)]
  assert _decode(_encode(runs, "weak: ✓")) == (runs, "weak: ✓")
  emoji = [(TestRun("t", Verdict.PASSED, stdout="😀" * 1000),)]
  assert 4000 <= len(_encode(emoji, None)) < 4200
