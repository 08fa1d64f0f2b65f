#!/usr/bin/env python3
"""Runs ssd_jax on a Cloud TPU slice through a queued resource, and always gives the slice back.

  python3 launch/queued_resource.py --project=P --zone=us-east5-a --accelerator=v5p-32 \\
    --workdir=/mnt/runs/v5p -- --config=configs/tpu_v5.py --config.model.hf_dir=/mnt/ckpt

Everything after `--` goes to `python -m ssd_jax.main` on every worker (with `--workdir` added).
Steps: create the queued resource; wait until ACTIVE (FAILED, SUSPENDING or SUSPENDED fail fast; --wait_timeout
bounds the wait); copy this checkout to every worker and install it under Python >= 3.11 (the TPU images ship
3.10: python3.11 comes from the distribution's packages); start the run on all workers at once under nohup,
each writing `logs/<worker>.log`; poll until every worker has written its exit code. If the slice is preempted
(SUSPENDING/SUSPENDED) the queued resource is deleted, created again and the run restarted: every stage resumes
from the workdir (up to --max_restarts times; a `--restart` given to the run applies to the first attempt only).
Per-host logs are fetched into --log_dir at the end. The slice is deleted on exit whatever happened (an error,
Ctrl-C, SIGTERM), unless --keep.

The workdir must outlive the slice and be the same path on every worker: a mount of a bucket (e.g. a gcsfuse
mount at /mnt/runs, set up by --workdir_mount) or a network file system. The JAX compilation cache lives in
WORKDIR/jax_cache, so a restarted run skips compilation. --dry_run prints every command without running any.
Only the standard library is used, so the launcher runs without the project's virtual environment.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

WAITING = {"CREATING", "ACCEPTED", "WAITING_FOR_RESOURCES", "PROVISIONING", "STATE_UNSPECIFIED", ""}
LOST = {"SUSPENDING", "SUSPENDED"}  # Preempted (spot) or taken back by the service.
REMOTE_DIR = "~/ssd_jax"
RUNTIMES = {
  "v5litepod": "v2-alpha-tpuv5-lite",
  "v5e": "v2-alpha-tpuv5-lite",
  "v5p": "v2-alpha-tpuv5",
  "v6e": "v2-alpha-tpuv6e",
}


class LaunchError(RuntimeError):
  pass


class Preempted(RuntimeError):
  pass


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  if "--" in argv:
    split = argv.index("--")
    argv, main_args = argv[:split], argv[split + 1 :]
  else:
    main_args = []
  env = os.environ.get
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--project", default=env("PROJECT"), help="GCP project (env PROJECT)")
  p.add_argument("--zone", default=env("ZONE"), help="zone (env ZONE)")
  p.add_argument("--accelerator", default=env("ACCELERATOR"), help="e.g. v5p-32, v5litepod-64 (env ACCELERATOR)")
  p.add_argument("--name", default=env("NAME") or f"ssd-jax-{time.strftime('%Y%m%d-%H%M%S')}")
  p.add_argument("--runtime", default=env("RUNTIME"), help="TPU software version (default by accelerator)")
  p.add_argument("--workdir", required=True, help="run directory every worker sees (a mount or network path)")
  p.add_argument("--workdir_mount", default="", help="shell command run on every worker first, e.g. a gcsfuse mount")
  p.add_argument("--spot", action="store_true", default=env("SPOT") == "1")
  p.add_argument("--keep", action="store_true", default=env("KEEP") == "1", help="keep the slice after the run")
  p.add_argument("--wait_timeout", type=float, default=3 * 3600, help="seconds to wait for ACTIVE")
  p.add_argument("--poll", type=float, default=30.0, help="seconds between state and job polls")
  p.add_argument("--max_restarts", type=int, default=3, help="preemptions survived before giving up")
  p.add_argument("--log_dir", default="logs", help="local directory the per-host logs are fetched into")
  p.add_argument("--dry_run", action="store_true", help="print every command instead of running it")
  args = p.parse_args(argv)
  for name in ("project", "zone", "accelerator"):
    if not getattr(args, name):
      p.error(f"--{name} is required (or set {name.upper()})")
  args.runtime = args.runtime or RUNTIMES.get(args.accelerator.split("-")[0], "tpu-ubuntu2204-base")
  return args, main_args


class Slice:
  """gcloud calls for one queued resource and its TPU VM workers."""

  def __init__(self, args: argparse.Namespace):
    self.args = args
    self.where = [f"--project={args.project}", f"--zone={args.zone}"]

  def gcloud(self, *words: str, capture: bool = False, check: bool = True) -> str:
    command = ["gcloud", *words, *self.where]
    print("+ " + shlex.join(command), flush=True)
    if self.args.dry_run:
      return ""
    done = subprocess.run(command, text=True, capture_output=capture)
    if check and done.returncode != 0:
      raise LaunchError(f"gcloud {' '.join(words[:3])} failed (exit {done.returncode}): {(done.stderr or '').strip()}")
    return (done.stdout or "").strip() if capture else ""

  def create(self) -> None:
    a = self.args
    words = ["compute", "tpus", "queued-resources", "create", a.name, f"--node-id={a.name}"]
    words += [f"--accelerator-type={a.accelerator}", f"--runtime-version={a.runtime}"]
    self.gcloud(*words, *(["--spot"] if a.spot else []))

  def state(self) -> str:
    if self.args.dry_run:
      self.gcloud("compute", "tpus", "queued-resources", "describe", self.args.name, "--format=value(state.state)")
      return "ACTIVE"
    words = ("compute", "tpus", "queued-resources", "describe", self.args.name, "--format=value(state.state)")
    return self.gcloud(*words, capture=True)

  def wait_active(self) -> None:
    deadline = time.monotonic() + self.args.wait_timeout
    while True:
      state = self.state()
      if state == "ACTIVE":
        return
      if state not in WAITING:
        raise LaunchError(f"queued resource {self.args.name} is {state}; not waiting for it")
      if time.monotonic() > deadline:
        raise LaunchError(f"queued resource {self.args.name} not ACTIVE after {self.args.wait_timeout:.0f} s ({state})")
      time.sleep(self.args.poll)

  def delete(self) -> None:
    words = ("compute", "tpus", "queued-resources", "delete", self.args.name, "--force", "--quiet")
    self.gcloud(*words, check=False)

  def ssh(self, command: str, worker: str = "all", capture: bool = False) -> str:
    words = ["compute", "tpus", "tpu-vm", "ssh", self.args.name, f"--worker={worker}", f"--command={command}"]
    return self.gcloud(*words, capture=capture)

  def scp(self, source: str, target: str, worker: str = "all") -> None:
    self.gcloud("compute", "tpus", "tpu-vm", "scp", source, target, f"--worker={worker}")

  def num_workers(self) -> int:
    if self.args.dry_run:
      return 1
    words = ("compute", "tpus", "tpu-vm", "describe", self.args.name, "--format=value(networkEndpoints[].ipAddress)")
    return max(1, len([ip for ip in self.gcloud(*words, capture=True).split(";") if ip]))


def source_tarball(repo_root: str) -> str:
  """This checkout (without venvs, git data and runs) as a .tgz in a temp dir."""
  skip = {".venv", ".git", "runs", "logs", "__pycache__", ".pytest_cache"}
  path = os.path.join(tempfile.mkdtemp(prefix="ssd_jax_src_"), "ssd_jax_src.tgz")
  with tarfile.open(path, "w:gz") as tar:
    tar.add(repo_root, arcname=".", filter=lambda info: None if os.path.basename(info.name) in skip else info)
  return path


def setup_command() -> str:
  """Shell run on every worker: Python >= 3.11 and the project in a virtual environment."""
  return " && ".join(
    [
      f"mkdir -p {REMOTE_DIR} && tar -C {REMOTE_DIR} -xzf /tmp/ssd_jax_src.tgz",
      "(command -v python3.11 >/dev/null || (sudo apt-get update -qq && "
      "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv))",
      f"cd {REMOTE_DIR} && (test -x .venv/bin/python || python3.11 -m venv .venv)",
      ". .venv/bin/activate && pip install -q --upgrade pip && pip install -q -e '.[tpu]'",
    ]
  )


def run_command(args: argparse.Namespace, main_args: list[str], attempt: int) -> str:
  """Shell that starts the run in the background on a worker; exit code to logs/exit_code when it ends."""
  workdir = shlex.quote(args.workdir)
  main = shlex.join(["python", "-m", "ssd_jax.main", f"--workdir={args.workdir}", *main_args])
  job = (
    f"cd {REMOTE_DIR} && . .venv/bin/activate && mkdir -p {workdir}/jax_cache && "
    f"JAX_COMPILATION_CACHE_DIR={workdir}/jax_cache {main}; echo $? > logs/exit_code"
  )
  log = f"logs/$(hostname).attempt{attempt}.log"
  prefix = f"({args.workdir_mount}) && " if args.workdir_mount else ""
  return (
    f"{prefix}cd {REMOTE_DIR} && mkdir -p logs && rm -f logs/exit_code && "
    f"nohup bash -c {shlex.quote(job)} > {log} 2>&1 < /dev/null &"
  )


STATUS_COMMAND = f"cat {REMOTE_DIR}/logs/exit_code 2>/dev/null || echo running"


def wait_for_job(tpu: Slice) -> int:
  """Polls until every worker wrote an exit code; returns the worst. Raises Preempted if the slice goes."""
  while True:
    state = tpu.state()
    if state in LOST:
      raise Preempted(state)
    if state != "ACTIVE":
      raise LaunchError(f"queued resource {tpu.args.name} became {state} during the run")
    if tpu.args.dry_run:
      tpu.ssh(STATUS_COMMAND, capture=True)
      return 0
    try:
      lines = tpu.ssh(STATUS_COMMAND, capture=True).split()
    except LaunchError:
      lines = ["running"]  # An ssh hiccup, or the slice going away: the next state poll tells which.
    if lines and "running" not in lines:
      return max((int(x) for x in lines if x.lstrip("-").isdigit()), default=1)
    time.sleep(tpu.args.poll)


def fetch_logs(tpu: Slice) -> None:
  os.makedirs(tpu.args.log_dir, exist_ok=True)
  for worker in range(tpu.num_workers()):
    try:
      tpu.scp(f"{tpu.args.name}:{REMOTE_DIR}/logs/*.log", tpu.args.log_dir + "/", worker=str(worker))
    except LaunchError as e:
      print(f"warning: logs of worker {worker} not fetched: {e}", file=sys.stderr)


def _on_signal(signum, frame):
  del frame
  raise SystemExit(128 + signum)  # Unwinds through `finally`, so the slice is deleted.


def resumed_args(main_args: list[str]) -> list[str]:
  """`main_args` for a run restarted after a preemption: without `--restart`, which would set aside again the
  progress the lost slice made on those stages."""
  kept, skip = [], False
  for arg in main_args:
    if skip:
      skip = False
    elif arg in ("--restart", "-restart"):
      skip = True
    elif not arg.lstrip("-").startswith("restart="):
      kept.append(arg)
  return kept


def launch(args: argparse.Namespace, main_args: list[str]) -> int:
  tpu = Slice(args)
  repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  tarball = "/tmp/ssd_jax_src.tgz" if args.dry_run else source_tarball(repo_root)
  code = 1
  try:
    for attempt in range(args.max_restarts + 1):
      tpu.create()
      tpu.wait_active()
      tpu.scp(tarball, f"{args.name}:/tmp/ssd_jax_src.tgz")
      tpu.ssh(setup_command())
      tpu.ssh(run_command(args, main_args if attempt == 0 else resumed_args(main_args), attempt))
      try:
        code = wait_for_job(tpu)
        break
      except Preempted as e:
        print(f"slice {args.name} lost ({e}); recreating it and resuming from {args.workdir}", flush=True)
        fetch_logs(tpu)
        tpu.delete()
    else:
      raise LaunchError(f"preempted {args.max_restarts + 1} times; giving up (the workdir keeps the progress)")
    fetch_logs(tpu)
    print(f"run finished with exit code {code}; logs in {args.log_dir}", flush=True)
    return code
  finally:
    if not args.keep:
      tpu.delete()


def main(argv: list[str]) -> int:
  args, main_args = parse_args(argv)
  signal.signal(signal.SIGTERM, _on_signal)
  signal.signal(signal.SIGHUP, _on_signal)
  try:
    return launch(args, main_args)
  except LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
