"""Two processes (gloo over 127.0.0.1): a failure on one host stops every host at once, with the reason.

Without agreement the others waited at the next barrier until it timed out (an unrelated gloo error after
30 s or more), restored another checkpoint step than the host that saw damage, or raced process 0's writes.
"""

import json
import pathlib
import re
import sys

import multiprocess_fixtures as mp

WORKER = pathlib.Path(__file__).with_name("agreement_worker.py")

TIMEOUT_S = 240  # A hang guard for the whole run, not a measure of speed.
# How a barrier that timed out reads (gloo, the coordination service, Orbax): a host left behind at a barrier
# ends there with such an error, on a fast machine or a slow one, instead of the outcome each step expects.
BARRIER_TIMEOUT = re.compile(r"timed? ?out|deadline", re.IGNORECASE)


def test_one_host_failures_stop_every_host_with_the_reason(tmp_path):
  port = mp.free_port()
  commands = [[sys.executable, str(WORKER), str(i), str(port), str(tmp_path)] for i in range(2)]
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  mp.wait(mp.start(commands, logs, mp.process_env(devices_each=2)), logs, TIMEOUT_S)
  p0, p1 = (json.loads((tmp_path / f"result_{i}.json").read_text()) for i in range(2))
  for result in (p0, p1):
    assert not [name for name, step in result.items() if BARRIER_TIMEOUT.search(step.get("message", ""))], result

  # A check failing on process 1 only: its own error there, the reason on process 0.
  assert p1["everywhere"]["raised"] == "ValueError"
  assert p0["everywhere"]["raised"] == "PeerError"
  assert "process 1: ValueError: shard 1 holds no records" in p0["everywhere"]["message"]
  # A decision process 0 makes: its refusal reaches process 1; its value reaches both.
  assert p0["on_coordinator"]["raised"] == "ConfigError"
  assert p1["on_coordinator"]["raised"] == "PeerError"
  assert "ConfigError: field 'seed' changed" in p1["on_coordinator"]["message"]
  assert p0["on_coordinator_value"]["returned"] == p1["on_coordinator_value"]["returned"] == {"a": [1, 2]}
  assert p0["on_coordinator_not_json"]["raised"] == "TypeError"
  assert p1["on_coordinator_not_json"]["raised"] == "PeerError"
  assert "TypeError" in p1["on_coordinator_not_json"]["message"]
  # Damage only process 1 sees (its data position, its state shards), and a listing there that lacks step 3:
  # both resume from step 3.
  assert p0["restore"]["returned"] == p1["restore"]["returned"] == [3, {"position": 3}]
  assert (tmp_path / "checkpoints.broken" / "6").is_dir() and (tmp_path / "checkpoints.broken" / "9").is_dir()
  # The runner's refusal of a changed stage stops both hosts, not process 0 alone.
  assert p0["runner"]["raised"] == "ConfigError" and "seed" in p0["runner"]["message"]
  assert p1["runner"]["raised"] == "PeerError" and "seed" in p1["runner"]["message"]
