"""One process of the two-process agreement test (run by tests/test_distributed_agreement.py, not by pytest).

  python tests/agreement_worker.py PROCESS_ID PORT WORKDIR

Joins a two-process run over gloo on 127.0.0.1 and makes each kind of one-host failure happen: a check that
fails on process 1 only, a decision that fails on process 0 only (or whose value JSON cannot hold), a
checkpoint damaged where only process 1 reads and listed differently there, and a stage refusal in the
runner. Writes what each step raised (type and message) or returned to WORKDIR/result_<PROCESS_ID>.json.
"""

from __future__ import annotations

import json
import os
import sys

from ssd_jax import distributed

PID, PORT, WORKDIR = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
distributed.start_distributed(coordinator_address=f"127.0.0.1:{PORT}", num_processes=2, process_id=PID)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402
from pipeline_fixtures import micro_config  # noqa: E402

from ssd_jax import process_group  # noqa: E402
from ssd_jax.config import ConfigError  # noqa: E402
from ssd_jax.pipeline import run_state, runner  # noqa: E402
from ssd_jax.train.checkpoint_resume import restore_or_init  # noqa: E402
from ssd_jax.train.checkpointing import Checkpointer  # noqa: E402
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer  # noqa: E402
from ssd_jax.train.train_state import init_train_state  # noqa: E402

results = {}


def outcome(name, work):
  try:
    results[name] = {"returned": work()}
  except Exception as e:  # pylint: disable=broad-except  # What was raised is the result.
    results[name] = {"raised": type(e).__name__, "message": str(e)}


group = process_group.current()


def shard_check():
  if PID == 1:
    raise ValueError("shard 1 holds no records")
  return "fine"


def coordinator_decision():
  if PID == 0:
    raise ConfigError("field 'seed' changed")
  return "unreachable"


outcome("everywhere", lambda: process_group.everywhere(group, shard_check))
outcome("on_coordinator", lambda: process_group.on_coordinator(group, coordinator_decision))
outcome("on_coordinator_value", lambda: process_group.on_coordinator(group, lambda: {"a": [1, 2]}))
outcome("on_coordinator_not_json", lambda: process_group.on_coordinator(group, lambda: {(1, 2): "a tuple key"}))

# Checkpoints at steps 3, 6 and 9; step 6 loses process 1's data position, which only process 1 reads, and
# process 1 cannot read its shards of step 9's state.
mesh = jax.make_mesh((jax.device_count(),), ("data",))
rows = NamedSharding(mesh, PartitionSpec("data"))
w = np.arange(16 * 4, dtype=np.float32).reshape(16, 4)
state = init_train_state(
  {"w": jax.make_array_from_callback(w.shape, rows, lambda i: w[i])}, make_optimizer(OptimizerConfig(1e-2, 1e-3, 1, 10))
)
directory = os.path.join(WORKDIR, "checkpoints")
checkpointer = Checkpointer(directory, save_interval_steps=3, async_save=False)
for step in (3, 6, 9):
  checkpointer.save(step, jax.jit(lambda s, k=step: s.replace(step=s.step + k))(state), data_state={"position": step})
checkpointer.close()
multihost_utils.sync_global_devices("saved")
if PID == 0:
  os.remove(os.path.join(directory, "6", "data", "process_1-of-2.json"))
multihost_utils.sync_global_devices("damaged")
if PID == 1:
  read_state = ocp.StandardCheckpointHandler.restore

  def unreadable_at_step_9(self, directory, args=None):
    if "/9/" in f"{directory}/":
      raise OSError(f"{directory}: chunk unreadable")
    return read_state(self, directory, args=args)

  ocp.StandardCheckpointHandler.restore = unreadable_at_step_9
checkpointer = Checkpointer(directory, save_interval_steps=3, async_save=False)
if PID == 1:  # Stale network-mount metadata: process 1 does not list step 3 yet.
  checkpointer.all_steps, checkpointer.latest_step = (lambda: [6, 9]), (lambda: 9)
outcome("restore", lambda: (lambda r: [r.step, r.data_state])(restore_or_init(checkpointer, state, with_data=True)))
checkpointer.close()

# A stage recorded as started with another seed: the coordinator refuses.
config = micro_config("forward")
stale = micro_config("forward")
stale.seed = 12345
records = run_state.StageRecords(os.path.join(WORKDIR, "run"))
if PID == 0:
  fingerprint = records.fingerprint(stale, "forward")
  record = {"fingerprint": fingerprint.digest, "fields": fingerprint.fields, "inputs": fingerprint.inputs}
  records.write("forward", "started", {"stage": "forward", **record})
multihost_utils.sync_global_devices("recorded")
stages = {"forward": lambda ctx: None}
outcome("runner", lambda: runner.run(runner.prepare(config, os.path.join(WORKDIR, "run"), stages), stages))

with open(os.path.join(WORKDIR, f"result_{PID}.json"), "w") as f:
  json.dump(results, f, indent=2)
