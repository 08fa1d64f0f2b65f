"""The items of a training checkpoint and their Orbax handlers, and reading the state item on its own.

  state:    the TrainState, Orbax's standard handler (`StateHandler`);
  data:     each process's data-iterator position, one JSON file per process (`IteratorStateHandler`);
  metadata: a JSON dict (Orbax's JSON handler).
A handler's restore returns `Unreadable` for an item this process cannot read, so that the error is raised
after Orbax's barrier; `checkpointing.Checkpointer` saves and restores all three.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from ssd_jax import process_group

STATE_ITEM = "state"
DATA_ITEM = "data"
METADATA_ITEM = "metadata"


@dataclasses.dataclass(frozen=True)
class Unreadable:
  """An item (state shards, data position) this process could not read. Orbax ends a restore with a barrier of
  every process, so the error waits until that barrier has passed (raised inside, it left the other hosts at
  the barrier)."""

  error: Exception


class StateHandler(ocp.StandardCheckpointHandler):
  """Orbax's standard handler, except that a failed restore waits past Orbax's barrier (see `Unreadable`)."""

  def restore(self, directory: epath.Path, args: ocp.args.StandardRestore | None = None) -> Any:
    try:
      return super().restore(directory, args=args)
    except Exception as e:  # pylint: disable=broad-except  # Raised by Checkpointer.restore, see Unreadable.
      return Unreadable(e)


@ocp.args.register_with_handler(StateHandler, for_save=True)
@dataclasses.dataclass
class StateSave(ocp.args.StandardSave):
  """`ocp.args.StandardSave` for `StateHandler` (the files are the standard handler's)."""


@ocp.args.register_with_handler(StateHandler, for_restore=True)
@dataclasses.dataclass
class StateRestore(ocp.args.StandardRestore):
  """`ocp.args.StandardRestore` for `StateHandler`."""


def check_visible(group: process_group.ProcessGroup, checkpoint: epath.Path, paths: Sequence[epath.Path]) -> None:
  """Every host checks that it sees `paths` (folders of `checkpoint`); a collective. Orbax raises a missing
  folder before its barrier, where the other hosts would wait."""

  def visible() -> None:
    unseen = [str(p) for p in (checkpoint, *paths) if not p.is_dir()]
    if unseen:
      raise FileNotFoundError(f"checkpoint {checkpoint}: process {group.index} does not see {unseen}")

  process_group.everywhere(group, visible)


def read_state(group: process_group.ProcessGroup, directory: str | os.PathLike, step: int) -> Any:
  """The state item a `Checkpointer` in `directory` saved at `step`, read without a target to host memory on
  every process; a collective.

  Raises:
    Exception: on a process that cannot see or read it, why (after Orbax's barrier, which the others reach);
      process_group.PeerError on the others.
  """
  checkpoint = epath.Path(directory) / str(step)
  check_visible(group, checkpoint, [checkpoint / STATE_ITEM])
  restored = ocp.Checkpointer(StateHandler()).restore(checkpoint / STATE_ITEM, args=StateRestore())

  def readable() -> Any:
    if isinstance(restored, Unreadable):
      raise restored.error
    return restored

  return process_group.everywhere(group, readable)


def _encode_iterator_state(state: Any) -> str:
  """JSON text for an iterator state: grain dataset iterators give dicts, grain data loaders give bytes."""
  if isinstance(state, bytes):
    return json.dumps({"bytes": base64.b64encode(state).decode("ascii")})
  return json.dumps({"json": state})


def _decode_iterator_state(text: str) -> Any:
  payload = json.loads(text)
  if "bytes" in payload:
    return base64.b64decode(payload["bytes"])
  return payload["json"]


class IteratorStateHandler(ocp.CheckpointHandler):
  """Saves one process's iterator state as `process_<i>-of-<n>.json`; restore returns that state."""

  def save(self, directory: epath.Path, args: IteratorStateSave) -> None:
    filename = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    filename.write_text(_encode_iterator_state(args.state))

  def restore(self, directory: epath.Path, args: IteratorStateRestore | None = None) -> Any:
    filename = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    try:
      if not filename.exists():
        raise FileNotFoundError(
          f"no data iterator state for process {jax.process_index()} of {jax.process_count()} in "
          f"{directory}; was the checkpoint written with a different number of processes?"
        )
      return _decode_iterator_state(filename.read_text())
    except Exception as e:  # pylint: disable=broad-except  # Raised by Checkpointer.restore, see Unreadable.
      return Unreadable(e)

  def metadata(self, directory: epath.Path) -> None:
    del directory

  def finalize(self, directory: epath.Path) -> None:
    del directory

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
  """The iterator state captured at save time (so later `next()` calls cannot change what is written)."""

  state: Any


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
  pass
