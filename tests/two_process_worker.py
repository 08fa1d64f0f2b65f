"""One process of the 2-process training test (run by tests/test_distributed_two_process.py, not by pytest).

  python tests/two_process_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR

Joins the run over gloo on 127.0.0.1, trains a sharded linear model with AdamW for 6 steps on a mesh that spans
both processes, saving a student and a teacher checkpoint at the same step (step 3, two managers at once),
then restores the student at step 3 in fresh managers and trains to step 6 again. Process 0 writes the losses
and the final parameters of both runs to WORKDIR/result_<mode>.npz.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from ssd_jax import distributed
from ssd_jax.train.checkpoint_resume import restore_or_init
from ssd_jax.train.checkpointing import Checkpointer
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.train_state import abstract_train_state, init_train_state

STEPS, SAVE_AT, BATCH, DIM_IN, DIM_OUT = 6, 3, 32, 16, 8


def make_problem(mesh):
  """Initial params (w sharded over 'data' on its rows) and a step function; same on every process count."""
  rng = np.random.default_rng(0)
  w = rng.standard_normal((DIM_IN, DIM_OUT)).astype(np.float32)
  x = rng.standard_normal((STEPS, BATCH, DIM_IN)).astype(np.float32)
  y = rng.standard_normal((STEPS, BATCH, DIM_OUT)).astype(np.float32)
  rows = NamedSharding(mesh, PartitionSpec("data"))
  params = {"w": jax.make_array_from_callback(w.shape, rows, lambda index: w[index])}
  optimizer = make_optimizer(OptimizerConfig(1e-2, 1e-3, 1, STEPS))

  def batch(step):
    place = lambda a: jax.make_array_from_callback(a.shape, rows, lambda index: a[index])
    return place(x[step]), place(y[step])

  @jax.jit
  def train_step(state, xb, yb):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean((xb @ p["w"] - yb) ** 2))(state.params)
    updates, opt_state = optimizer.tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(jnp.add, state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), loss

  return init_train_state(params, optimizer), batch, train_step


def train(state, batch, train_step, until):
  losses = []
  while int(state.step) < until:
    state, loss = train_step(state, *batch(int(state.step)))
    losses.append(float(loss))
  return state, losses


def main(process_id: int, num_processes: int, port: int, workdir: str) -> None:
  start = distributed.start_distributed(
    coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id
  )
  assert start.mode == distributed.EXPLICIT and jax.process_count() == num_processes, start
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  initial, batch, train_step = make_problem(mesh)

  student = Checkpointer(os.path.join(workdir, "checkpoints"), save_interval_steps=SAVE_AT)
  teacher = Checkpointer(os.path.join(workdir, "teacher_checkpoints"), save_interval_steps=SAVE_AT)
  state, losses = train(initial, batch, train_step, SAVE_AT)
  # Both managers save the same step at once: their barrier names must differ.
  assert student.save(SAVE_AT, state, data_state={"next": SAVE_AT})
  assert teacher.save(SAVE_AT, initial.replace(step=state.step), metadata={"role": "teacher"})
  state, more = train(state, batch, train_step, STEPS)
  straight = losses + more
  student.close()
  teacher.close()

  with Checkpointer(os.path.join(workdir, "checkpoints")) as resumed_student:
    restored = restore_or_init(resumed_student, initial)
  with Checkpointer(os.path.join(workdir, "teacher_checkpoints")) as resumed_teacher:
    teacher_back = resumed_teacher.restore(abstract_train_state(initial))
  assert restored.step == SAVE_AT and restored.data_state == {"next": SAVE_AT}, restored.step
  assert teacher_back.metadata == {"role": "teacher"}
  resumed, resumed_losses = train(restored.state, batch, train_step, STEPS)

  gather = lambda s: np.asarray(multihost_utils.process_allgather(s.params["w"], tiled=True))
  w_straight, w_resumed, w_teacher = gather(state), gather(resumed), gather(teacher_back.state)
  if jax.process_index() == 0:
    np.savez(
      os.path.join(workdir, f"result_{num_processes}.npz"),
      losses=np.asarray(straight),
      resumed_losses=np.asarray(losses + resumed_losses),
      w=w_straight,
      w_resumed=w_resumed,
      w_teacher=w_teacher,
    )
  multihost_utils.sync_global_devices("done")


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
