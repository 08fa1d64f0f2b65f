"""Two local processes (gloo over 127.0.0.1, 4 CPU devices each) train, checkpoint with two managers and resume."""

import sys

import jax
import multiprocess_fixtures as mp
import numpy as np
import two_process_worker as worker

TIMEOUT_S = 300


def test_two_processes_match_one_and_resume_bit_identically(tmp_path):
  port = mp.free_port()
  commands = [[sys.executable, worker.__file__, str(i), "2", str(port), str(tmp_path)] for i in range(2)]
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  mp.wait(mp.start(commands, logs, mp.process_env(devices_each=4)), logs, TIMEOUT_S)
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
