"""launch/queued_resource.py against a fake gcloud: success, a failing run, a FAILED request, preemption, dry run."""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_gcloud"
LAUNCHER = REPO / "launch" / "queued_resource.py"


def launch(tmp_path, states, jobs=(), extra=(), fail_create=False, main=()):
  """Runs the launcher; returns (exit code, output, the gcloud calls as word lists)."""
  fake = tmp_path / "gcloud_state"
  fake.mkdir()
  (fake / "states").write_text("\n".join(states) + "\n")
  (fake / "jobs").write_text("\n".join(jobs) + "\n")
  if fail_create:
    (fake / "fail_create").write_text("")
  env = dict(os.environ, PATH=f"{FAKE}{os.pathsep}{os.environ['PATH']}", FAKE_GCLOUD_DIR=str(fake))
  command = [sys.executable, str(LAUNCHER), "--project=p", "--zone=z", "--accelerator=v5p-16", "--name=qr"]
  command += ["--workdir=/mnt/runs/a b", "--poll=0", f"--log_dir={tmp_path / 'logs'}", *extra]
  command += ["--", "--config=configs/tpu_v5.py", "--config.sft.note=two words", *main]
  done = subprocess.run(command, env=env, text=True, capture_output=True, timeout=120)
  calls_file = fake / "calls.jsonl"
  calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
  return done.returncode, done.stdout + done.stderr, calls


def verbs(calls):
  """('create' | 'describe' | 'delete' | 'ssh' | 'scp', ...) of each call, in order."""
  return [c[3] for c in calls]


def ssh_commands(calls):
  return [next(a for a in c if a.startswith("--command=")) for c in calls if c[3] == "ssh"]


def test_success_runs_everywhere_fetches_logs_and_deletes(tmp_path):
  code, out, calls = launch(tmp_path, ["WAITING_FOR_RESOURCES", "PROVISIONING", "ACTIVE"], ["running", "0 0"])
  assert code == 0, out
  assert verbs(calls)[0] == "create" and verbs(calls)[-1] == "delete"
  assert "--spot" not in calls[0] and "--runtime-version=v2-alpha-tpuv5" in calls[0]
  setup, run = ssh_commands(calls)[:2]
  assert "python3.11 -m venv" in setup and "pip install -q -e '.[tpu]'" in setup
  assert "--worker=all" in calls[verbs(calls).index("ssh")]
  assert "nohup" in run and "JAX_COMPILATION_CACHE_DIR=" in run and "attempt0.log" in run
  assert "'--config.sft.note=two words'" in run and "'--workdir=/mnt/runs/a b'" in run
  assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["worker0.log", "worker1.log"]


def test_failing_run_returns_its_exit_code_and_still_deletes(tmp_path):
  code, out, calls = launch(tmp_path, ["ACTIVE"], ["0 3"])
  assert code == 3, out
  assert verbs(calls)[-1] == "delete"


def test_failed_request_fails_fast_and_deletes(tmp_path):
  code, out, calls = launch(tmp_path, ["ACCEPTED", "FAILED"])
  assert code == 1 and "is FAILED" in out
  assert "ssh" not in verbs(calls) and verbs(calls)[-1] == "delete"


def test_wait_timeout(tmp_path):
  code, out, calls = launch(tmp_path, ["WAITING_FOR_RESOURCES"], extra=["--wait_timeout=0"])
  assert code == 1 and "not ACTIVE after" in out
  assert verbs(calls)[-1] == "delete"


def test_create_error_still_deletes(tmp_path):
  code, out, calls = launch(tmp_path, ["ACTIVE"], fail_create=True)
  assert code == 1 and "quota exceeded" in out
  assert verbs(calls) == ["create", "delete"]


def test_preemption_recreates_and_resumes(tmp_path):
  # Attempt 0: ACTIVE, runs, then SUSPENDED at the second poll; attempt 1: ACTIVE again and finishes.
  states = ["ACTIVE", "ACTIVE", "SUSPENDED", "ACTIVE"]
  code, out, calls = launch(tmp_path, states, ["running", "0 0"], extra=["--spot"])
  assert code == 0, out
  v = verbs(calls)
  assert v.count("create") == 2 and v.count("delete") == 2 and v[-1] == "delete"
  assert v.index("delete") < len(v) - 1  # The lost slice was deleted before the second create.
  runs = [c for c in ssh_commands(calls) if "nohup" in c]
  assert "attempt0.log" in runs[0] and "attempt1.log" in runs[1]
  assert all("--spot" in c for c in calls if c[3] == "create")


def test_a_restart_is_not_repeated_after_a_preemption(tmp_path):
  states = ["ACTIVE", "ACTIVE", "SUSPENDED", "ACTIVE"]
  code, out, calls = launch(tmp_path, states, ["running", "0 0"], main=["--restart=sft,eval", "--restart", "eval"])
  assert code == 0, out
  first, second = [c for c in ssh_commands(calls) if "nohup" in c]
  assert "--restart=sft,eval" in first and "--restart" in first
  # The second attempt resumes what the first did on those stages instead of setting it aside again.
  assert "--restart" not in second and "'--config.sft.note=two words'" in second


def test_keep_leaves_the_slice(tmp_path):
  code, _, calls = launch(tmp_path, ["ACTIVE"], ["0"], extra=["--keep"])
  assert code == 0 and "delete" not in verbs(calls)


def test_dry_run_prints_every_command_and_calls_nothing(tmp_path):
  code, out, calls = launch(tmp_path, ["ACTIVE"], extra=["--dry_run"])
  assert code == 0 and calls == []
  printed = [line for line in out.splitlines() if line.startswith("+ gcloud")]
  for verb in ("queued-resources create", "queued-resources describe", "tpu-vm scp", "tpu-vm ssh", "delete"):
    assert any(verb in line for line in printed), verb
