"""Two local processes (gloo over 127.0.0.1, 4 CPU devices each) train, checkpoint with two managers and resume."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import two_process_worker as worker

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(workdir: pathlib.Path, num_processes: int = 2, devices_each: int = 4) -> None:
  """Runs the worker as `num_processes` processes; raises with their logs if any fails or hangs."""
  env = dict(os.environ)
  env.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}",
    PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
  )
  port = _free_port()
  logs = [workdir / f"process_{i}.log" for i in range(num_processes)]
  procs = []
  for i, log in enumerate(logs):
    with open(log, "w") as out:
      command = [sys.executable, worker.__file__, str(i), str(num_processes), str(port), str(workdir)]
      procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
  try:
    codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
  except subprocess.TimeoutExpired:
    codes = None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  if codes != [0] * num_processes:
    text = "\n".join(
      f"--- process {i} (exit {p.returncode})\n{log.read_text()[-3000:]}" for i, (p, log) in enumerate(zip(procs, logs))
    )
    raise AssertionError(f"worker processes failed or hung:\n{text}")


def test_two_processes_match_one_and_resume_bit_identically(tmp_path):
  run_processes(tmp_path)
  result = np.load(tmp_path / "result_2.npz")
  # Resuming from the step-3 checkpoint replays the same steps bit for bit.
  np.testing.assert_array_equal(result["resumed_losses"], result["losses"])
  np.testing.assert_array_equal(result["w_resumed"], result["w"])
  # Both managers wrote their own step-3 checkpoint (the teacher holds the initial weights).
  assert (tmp_path / "checkpoints" / "3").is_dir() and (tmp_path / "teacher_checkpoints" / "3").is_dir()

  # Referee: the same training in this one process over its 8 devices.
  mesh = jax.make_mesh((8,), ("data",))
  initial, batch, train_step = worker.make_problem(mesh)
  state, losses = worker.train(initial, batch, train_step, worker.STEPS)
  np.testing.assert_array_equal(result["w_teacher"], np.asarray(initial.params["w"]))
  np.testing.assert_allclose(result["losses"], losses, rtol=1e-6)
  np.testing.assert_allclose(result["w"], np.asarray(state.params["w"]), rtol=1e-6, atol=1e-7)
