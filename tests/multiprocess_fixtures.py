"""Starting N local JAX processes that form one run (gloo over 127.0.0.1, a few CPU devices each)."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(devices_each: int) -> dict[str, str]:
  """The test environment with `devices_each` fake CPU devices per process and this checkout importable."""
  env = dict(os.environ)
  env.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}",
    PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
  )
  return env


def start(commands: list[list[str]], logs: list[pathlib.Path], env: dict[str, str]) -> list[subprocess.Popen]:
  """Starts one process per command, each writing stdout and stderr to its log."""
  procs = []
  for command, log in zip(commands, logs, strict=True):
    with open(log, "a") as out:
      procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO))
  return procs


def stop(procs: list[subprocess.Popen]) -> None:
  for p in procs:
    if p.poll() is None:
      p.kill()
      p.wait()


def wait(procs: list[subprocess.Popen], logs: list[pathlib.Path], timeout_s: float) -> None:
  """Waits for all; raises with the tail of every log if one fails or they run past `timeout_s`."""
  try:
    codes = [p.wait(timeout=timeout_s) for p in procs]
  except subprocess.TimeoutExpired:
    codes = None
  finally:
    stop(procs)
  if codes != [0] * len(procs):
    text = "\n".join(
      f"--- process {i} (exit {p.returncode})\n{log.read_text()[-3000:]}" for i, (p, log) in enumerate(zip(procs, logs))
    )
    raise AssertionError(f"processes failed or hung:\n{text}")
