"""Processes of one run started differently stop before any work, every one with the same message."""

import json
import pathlib
import sys

import multiprocess_fixtures as mp
import pytest

from ssd_jax import config as config_lib
from ssd_jax.pipeline import code_version, host_agreement
from ssd_jax.process_group import ProcessGroup


def _group(payloads_of_others, index=0):
  """Process `index` of a run whose other processes sent `payloads_of_others` (JSON-ready starts)."""

  def allgather(mine):
    others = [json.dumps(p).encode() for p in payloads_of_others]
    return [*others[:index], mine, *others[index:]]

  return ProcessGroup(index, len(payloads_of_others) + 1, allgather)


def test_agreeing_processes_pass_and_only_a_hosts_own_fields_may_differ():
  config = config_lib.base_config()
  same = json.loads(json.dumps(host_agreement.started_with(config, "runs/a/", ["sft", "eval"]), default=str))
  host_agreement.check_hosts_agree(_group([same]), config, "runs/a", ["eval", "sft"])  # same dir, same set
  other = json.loads(json.dumps(same))
  other["config"]["eval"]["workers"] = 7  # how many sandbox workers a host starts: its own business
  assert host_agreement.differences([same, other]) == []
  other["config"]["sft"]["async_checkpointing"] = not same["config"]["sft"]["async_checkpointing"]
  (found,) = host_agreement.differences([same, other])  # Saves would wait at different barriers.
  assert "field 'sft.async_checkpointing'" in found


def test_a_process_that_cannot_say_what_it_runs_stops_every_process(monkeypatch):
  config = config_lib.base_config()
  good = json.loads(json.dumps(host_agreement.started_with(config, "w", []), default=str))
  with pytest.raises(config_lib.ConfigError, match=r"process 1: FileNotFoundError: gone"):
    host_agreement.check_hosts_agree(_group([{"error": "FileNotFoundError: gone"}]), config, "w", [])

  def unreadable():
    raise PermissionError("ssd_jax/x.py")

  monkeypatch.setattr(code_version, "source_digest", unreadable)
  with pytest.raises(config_lib.ConfigError, match=r"process 0: PermissionError: ssd_jax/x.py"):
    host_agreement.check_hosts_agree(_group([good]), config, "w", [])


def test_each_difference_is_named_on_every_process():
  first, second = config_lib.base_config(), config_lib.base_config()
  second.seed = 1
  starts = [host_agreement.started_with(first, "runs/a", []), host_agreement.started_with(second, "runs/b", [])]
  starts = json.loads(json.dumps(starts, default=str))
  messages = []
  for index, (config, workdir) in enumerate(((first, "runs/a"), (second, "runs/b"))):
    with pytest.raises(config_lib.ConfigError) as refused:
      host_agreement.check_hosts_agree(_group([starts[1 - index]], index), config, workdir, [])
    messages.append(str(refused.value))
  assert messages[0] == messages[1]  # Both compare with process 0's start.
  assert "process 1 differs from process 0: field 'seed' 0 vs 1; --workdir 'runs/a' vs 'runs/b'." in messages[0]
  assert messages[0].endswith("Start every host from the same checkout with the same flags")
  # Edits not committed show as other source files under the same commit.
  starts[1] = json.loads(json.dumps(starts[0]))
  starts[1]["code"]["source"] = "0" * 16
  (found,) = host_agreement.differences(starts)
  assert found.endswith("(same commit, other source files)")


def test_many_differences_are_counted_past_the_first_few():
  mine = json.loads(json.dumps(host_agreement.started_with(config_lib.base_config(), "w", []), default=str))
  other = json.loads(json.dumps(mine))
  numbers = [k for k, v in other["config"]["sft"].items() if isinstance(v, (int, float))][:12]
  for i, key in enumerate(numbers):
    other["config"]["sft"][key] = -1 - i
  (found,) = host_agreement.differences([mine, other])
  assert found.count("field 'sft.") == host_agreement.MAX_LISTED and found.endswith(f"and {len(numbers) - 8} more")


def test_the_source_digest_reads_every_source_file(monkeypatch):
  digest = code_version.source_digest()
  code_version.source_digest.cache_clear()
  real = pathlib.Path.read_bytes
  monkeypatch.setattr(pathlib.Path, "read_bytes", lambda p: real(p) + (b"#" if p.name == "code_version.py" else b""))
  try:
    assert code_version.source_digest() != digest  # an edit not committed changes it
  finally:
    code_version.source_digest.cache_clear()


def _two_processes(tmp_path, flags_of) -> list[str]:
  """Starts `ssd_jax.main` as two gloo processes with `flags_of(i)` each; returns their logs once both exit."""
  main = "from absl import app; from ssd_jax import main; app.run(main.main)"
  config = pathlib.Path(__file__).resolve().parents[1] / "configs" / "default.py"
  port = mp.free_port()
  commands = [
    [sys.executable, "-c", main, f"--config={config}", *flags_of(i)]
    + [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"]
    for i in range(2)
  ]
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  procs = mp.start(commands, logs, mp.process_env(devices_each=1))
  try:
    codes = [p.wait(timeout=240) for p in procs]
  finally:
    mp.stop(procs)
  texts = [log.read_text() for log in logs]
  assert codes[0] != 0 and codes[1] != 0, texts
  return texts


def test_two_processes_started_with_different_flags_both_stop_naming_it(tmp_path):
  texts = _two_processes(tmp_path, lambda i: [f"--workdir={tmp_path / 'run'}", f"--config.seed={i}"])
  for text in texts:
    assert "process 1 differs from process 0: field 'seed' 0 vs 1" in text, text[-2000:]
  assert not (tmp_path / "run").exists()  # stopped before anything was written


def test_a_host_whose_workdir_is_unusable_stops_every_host_with_its_reason(tmp_path):
  """A mount that failed on one worker: the others hear why at once, not a timeout of the join."""
  (tmp_path / "not_a_dir").write_text("")
  texts = _two_processes(tmp_path, lambda i: [f"--workdir={tmp_path / ('run' if i == 0 else 'not_a_dir')}"])
  assert "is a file, not a directory" in texts[1], texts[1][-2000:]
  assert "another process stopped the run: process 1: ConfigError: --workdir" in texts[0], texts[0][-2000:]
  assert not (tmp_path / "run").exists()
