"""Resuming a run: the newest intact checkpoint (every item restores, values finite), broken ones set aside."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ssd_jax import process_group
from ssd_jax.train.checkpointing import Checkpointer, Restored
from ssd_jax.train.train_state import abstract_train_state


class CheckpointError(RuntimeError):
  """No checkpoint in a directory that has some could be restored intact."""


def non_finite_leaves(state: Any) -> list[str]:
  """Paths of floating-point leaves of `state` holding a NaN or an infinity (a collective for sharded leaves;
  host arrays are checked on the host)."""
  bad = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
      continue
    if isinstance(leaf, np.ndarray):
      finite = np.isfinite(leaf.astype(np.float32)).all()
    else:
      finite = bool(jax.device_get(jnp.isfinite(leaf).all()))
    if not finite:
      bad.append(jax.tree_util.keystr(path))
  return bad


def restore_or_init(checkpointer: Checkpointer | None, initial_state: Any, *, with_data: bool = False) -> Restored:
  """The newest intact checkpoint restored like `initial_state` (same shardings), or `initial_state` at step 0.

  A checkpoint is intact when every item restores (state, metadata and, `with_data`, this process's iterator
  position, which must be there) and its parameters and optimizer state are finite. A broken one is skipped,
  saying which step and why, and the next older one is tried.

  Args:
    checkpointer: where to look; None means always start fresh.
    initial_state: the placed step-0 state (a pytree with a `step` leaf); its shapes, dtypes and shardings are
      the restore target.
    with_data: the caller resumes a data iterator from the checkpoint.

  Raises:
    CheckpointError: there are checkpoints but none is intact.
  """
  group = process_group.current()
  # Process 0 lists the steps: hosts that see the directory differently (stale network-mount metadata) would
  # try different steps and pair their per-step exchanges wrongly.
  steps = [] if checkpointer is None else process_group.on_coordinator(group, checkpointer.all_steps)
  if not steps:
    return Restored(step=int(jax.device_get(initial_state.step)), state=initial_state, data_state=None, metadata=None)
  abstract = abstract_train_state(initial_state)
  where = f" on process {group.index}" if group.count > 1 else ""
  skipped = []
  for step in sorted(steps, reverse=True):
    try:
      restored, failure = checkpointer.restore(abstract, step=step, with_data=with_data), b""
    except Exception as e:  # pylint: disable=broad-except  # Any damage: missing files, truncated data.
      first_line = (str(e).splitlines() or [""])[0][:200]
      restored, failure = None, f"step {step} does not restore{where} ({type(e).__name__}: {first_line})".encode()
    # Each host reads its own shards and data position: a step counts only where every host restored it, so
    # all resume from the same step.
    failures = [f.decode() for f in group.allgather(failure) if f]
    if failures:
      skipped.append((step, "; ".join(failures)))
      continue
    bad = non_finite_leaves(restored.state)
    if bad:
      skipped.append((step, f"step {step} holds non-finite values in {', '.join(bad[:3])}{' ...' * (len(bad) > 3)}"))
      continue
    # Later saves of those steps must not collide with the broken ones.
    places = checkpointer.set_aside([broken for broken, _ in skipped]) if skipped else []
    for (_, reason), where in zip(skipped, places, strict=True):
      logging.warning("checkpoint %s: %s; set aside to %s", checkpointer.directory, reason, where)
      if jax.process_index() == 0:
        print(f"checkpoint {reason}; set aside to {where}; resuming from step {step}")
    return restored
  raise CheckpointError(
    f"no intact checkpoint in {checkpointer.directory}: "
    + "; ".join(reason for _, reason in skipped)
    + ". Move the directory aside to train from the start."
  )
