"""Orbax checkpoints of a training run: the sharded TrainState, each process's data position, metadata.

A checkpoint at step s holds the three items of `checkpoint_items`; the state is restored into the sharded
abstract state, so each host reads only its shards. Saves are asynchronous; call `wait_until_finished()` (or
`close()`) before the process exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import orbax.checkpoint as ocp
from etils import epath

from ssd_jax import process_group
from ssd_jax.train.checkpoint_items import (
  DATA_ITEM,
  METADATA_ITEM,
  STATE_ITEM,
  IteratorStateRestore,
  IteratorStateSave,
  StateRestore,
  StateSave,
  Unreadable,
  check_visible,
)
from ssd_jax.train.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class Restored:
  """What `Checkpointer.restore` returns; `data_state` / `metadata` are None if they were not saved."""

  step: int
  state: TrainState
  data_state: Any
  metadata: dict[str, Any] | None


class Checkpointer:
  """An `ocp.CheckpointManager` for TrainState + iterator position + metadata.

  Args:
    directory: root directory; step checkpoints live in numbered subdirectories.
    save_interval_steps: `save` writes only when the step is a multiple of this (or when forced).
    max_to_keep: keep the newest this many checkpoints (None keeps all).
    async_save: write in a background thread after the device-to-host copy.
    barrier_prefix: prefix of this manager's cross-process barrier names; managers that save the same step at
      the same time (a student and its teacher) need different ones. Default: the directory's name, which
      every process sees alike.
  """

  def __init__(
    self,
    directory: str | os.PathLike,
    *,
    save_interval_steps: int = 1,
    max_to_keep: int | None = 3,
    async_save: bool = True,
    barrier_prefix: str | None = None,
  ):
    if save_interval_steps < 1:
      raise ValueError(f"save_interval_steps must be >= 1, got {save_interval_steps}")
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
    self.save_interval_steps = save_interval_steps
    self.directory = epath.Path(directory).absolute()
    self.barrier_prefix = barrier_prefix or self.directory.name
    options = ocp.CheckpointManagerOptions(
      save_interval_steps=save_interval_steps,
      max_to_keep=max_to_keep,
      enable_async_checkpointing=async_save,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=self.barrier_prefix),
    )
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=(STATE_ITEM, DATA_ITEM, METADATA_ITEM)
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    """Whether `save(step, ...)` would write: the step is a multiple of the interval and is new.

    Orbax alone would also save the first step it sees; a run saves on its interval only.
    """
    return step % self.save_interval_steps == 0 and self._manager.should_save(step)

  def save(
    self,
    step: int,
    state: TrainState,
    *,
    data_state: Any = None,
    metadata: Mapping[str, Any] | None = None,
    force: bool = False,
  ) -> bool:
    """Starts saving at `step` if the interval says so (or `force`); returns whether it did."""
    if not (force or self.should_save(step)):
      return False
    items = {STATE_ITEM: StateSave(state)}
    if data_state is not None:
      items[DATA_ITEM] = IteratorStateSave(data_state)
    if metadata is not None:
      items[METADATA_ITEM] = ocp.args.JsonSave(dict(metadata))
    with self._save_failures():
      return self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, abstract_state: TrainState, step: int | None = None, *, with_data: bool = False) -> Restored:
    """Restores `step` (default: latest) into the shardings of `abstract_state`; a collective.

    Args:
      abstract_state: TrainState of `jax.ShapeDtypeStruct`s with shardings
        (`ssd_jax.train.train_state.abstract_train_state`).
      step: which checkpoint; None for the newest.
      with_data: the caller resumes a data iterator, so the checkpoint must hold its position.

    Raises:
      FileNotFoundError: there is no checkpoint, a host does not see the step's items, or `with_data` and the
        checkpoint has no data item.
      process_group.PeerError: on the other hosts, when one of them raised one of these.
    """

    def contents() -> tuple[int, list[str]]:
      found = self.latest_step() if step is None else step
      if found is None:
        raise FileNotFoundError(f"no checkpoint in {self.directory}")
      return found, list(self._manager.item_metadata(found).keys())

    # Hosts can see the directory differently (stale network-mount metadata): process 0 reads what is there,
    # so all restore the same items, and every host checks that it sees the step, since Orbax raises that
    # before its barrier and the others would wait there.
    group = process_group.current()
    step, names = process_group.on_coordinator(group, contents)
    path = self.directory / str(step)
    check_visible(group, path, [path / name for name in names])
    saved = set(names)
    if with_data and DATA_ITEM not in saved:
      raise FileNotFoundError(f"checkpoint {path} has no '{DATA_ITEM}' item: the data iterator's position is lost")
    items = {STATE_ITEM: StateRestore(abstract_state)}
    if DATA_ITEM in saved:
      items[DATA_ITEM] = IteratorStateRestore()
    if METADATA_ITEM in saved:
      items[METADATA_ITEM] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    for item in (STATE_ITEM, DATA_ITEM):
      if isinstance(restored.get(item), Unreadable):
        raise restored[item].error
    return Restored(
      step=step,
      state=restored[STATE_ITEM],
      data_state=restored.get(DATA_ITEM) if DATA_ITEM in saved else None,
      metadata=restored.get(METADATA_ITEM) if METADATA_ITEM in saved else None,
    )

  def wait_until_finished(self) -> None:
    """Blocks until pending saves are written; raises what a failed one raised."""
    with self._save_failures():
      self._manager.wait_until_finished()
      self._manager.check_for_errors()

  def set_aside(self, steps: Sequence[int]) -> list[str]:
    """Moves each step's directory to `<directory>.broken/<step>` (kept for inspection); returns where.

    A collective: process 0 moves them all, and a failed move stops every process with the reason (a barrier
    after it left the others waiting). Every process re-reads the directory only after the last move (one
    re-reading while process 0 moved the next step failed on that host alone).
    """

    def move() -> list[str]:
      targets = []
      for step in steps:
        target = epath.Path(f"{self.directory}.broken") / str(step)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
          target = epath.Path(f"{target}.{len(list(target.parent.iterdir()))}")
        (self.directory / str(step)).rename(target)
        targets.append(str(target))
      return targets

    group = process_group.current()
    targets = process_group.on_coordinator(group, move)
    process_group.everywhere(group, self._manager.reload)
    return targets

  def check_for_errors(self) -> None:
    """Raises the error of a failed background save, without waiting for one in progress."""
    with self._save_failures():
      self._manager.check_for_errors()

  @contextlib.contextmanager
  def _save_failures(self):
    """A save that failed on the file system (disk full, permissions) as `CheckpointSaveError`, one line naming
    the directory and the OS error; other errors pass unchanged."""
    try:
      yield
    except Exception as e:
      cause = e
      while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
      if cause is None:
        raise
      raise CheckpointSaveError(f"saving a checkpoint in {self.directory} failed: {cause}") from e

  def close(self) -> None:
    """Waits for pending saves and releases the manager; raises what a failed save raised."""
    with self._save_failures():
      self._manager.wait_until_finished()
      self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written (disk full, permissions): training stopped at that step."""
