"""The processes of a run as one group: who this process is, and an all-gather of byte strings between them.

Host-side work that every process does the same way (grading samples in a sandbox, say) can be split by
`index` / `count` and the pieces exchanged with `allgather`; JAX's collectives carry the bytes, so it works
wherever the run's devices talk to each other (gloo on CPU, ICI/DCN on TPU). `everywhere` and
`on_coordinator` make a step's failure on one process stop every process with its reason.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

T = TypeVar("T")
ALLGATHER_CHUNK_BYTES = 64 << 20  # what each process sends per gather in `_jax_allgather`


class PeerError(RuntimeError):
  """Raised on every other process when one process's part of a collective step failed."""


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
  """This process's place in the run.

  Attributes:
    index: this process's index, 0 <= index < count.
    count: processes in the run.
    allgather: every process's payload, in process order; a collective, so every process must call it with
      its own payload at the same point.
  """

  index: int
  count: int
  allgather: Callable[[bytes], list[bytes]]

  def __post_init__(self):
    if not 0 <= self.index < self.count:
      raise ValueError(f"process index {self.index} is not in [0, {self.count})")

  def share(self, n: int) -> range:
    """The items of `n` this process takes: every count-th one, starting at its index."""
    return range(self.index, n, self.count)


def single_process() -> ProcessGroup:
  """A group of one: gathering returns the payload itself."""
  return ProcessGroup(0, 1, lambda payload: [payload])


def _jax_allgather(payload: bytes) -> list[bytes]:
  # Lengths travel as 8 bytes each: JAX without x64 gathers 32-bit integers, which overflow at 2 GiB.
  length = np.frombuffer(len(payload).to_bytes(8, "little"), np.uint8)
  gathered_lengths = np.asarray(multihost_utils.process_allgather(length))  # [count, 8]
  lengths = [int.from_bytes(row.tobytes(), "little") for row in gathered_lengths]
  data = np.frombuffer(payload, np.uint8)
  parts: list[list[bytes]] = [[] for _ in lengths]
  # In chunks, keeping each process's own bytes only: one gather of every payload padded to the largest
  # would hold count x largest. The chunks follow from the gathered lengths, so every process gathers alike.
  for start in range(0, max(lengths), ALLGATHER_CHUNK_BYTES):
    row = np.zeros([min(ALLGATHER_CHUNK_BYTES, max(lengths) - start)], np.uint8)
    mine = data[start : start + len(row)]
    row[: len(mine)] = mine
    rows = np.asarray(multihost_utils.process_allgather(row))  # [count, len(row)]
    for i, n in enumerate(lengths):
      if n > start:
        parts[i].append(rows[i, : n - start].tobytes())
  return [b"".join(part) for part in parts]


def current() -> ProcessGroup:
  """The run's processes as JAX sees them (a group of one when JAX runs a single process)."""
  if jax.process_count() == 1:
    return single_process()
  return ProcessGroup(jax.process_index(), jax.process_count(), _jax_allgather)


def _describe(error: Exception) -> str:
  return f"{type(error).__name__}: {str(error)[:4000]}"


def everywhere(group: ProcessGroup, work: Callable[[], T]) -> T:
  """Runs `work` on every process and returns this process's result; a collective.

  A check that fails on one host only (a file it cannot see, a data shard of its own) would otherwise leave
  the others waiting at the next barrier until it timed out with an unrelated error.

  Raises:
    Exception: on a process where `work` raised, that error; PeerError on the others, naming each process
      that failed and why.
  """
  try:
    result, error = work(), None
  except Exception as e:  # pylint: disable=broad-except  # Every failure must reach the other processes.
    result, error = None, e
  reports = group.allgather(b"" if error is None else _describe(error).encode())
  if error is not None:
    raise error
  failed = [f"process {i}: {r.decode()}" for i, r in enumerate(reports) if r]
  if failed:
    raise PeerError(f"another process stopped the run: {'; '.join(failed)}")
  return result


def on_coordinator(group: ProcessGroup, work: Callable[[], Any]) -> Any:
  """Runs `work` on process 0 only and gives every process its result as JSON (other values as str); a collective.

  For decisions that read files process 0 writes (stage markers, a recorded split): made once, they cannot
  differ between hosts that read them at different moments.

  Returns:
    The result after a JSON round trip, on process 0 too, so every process holds the same value (tuples
    become lists).

  Raises:
    Exception: on process 0, what `work` or serializing its result raised; PeerError on the others, saying
      what it was.
  """
  if group.index == 0:
    try:
      # Serialized before anything is sent: a result JSON cannot hold (a tuple key) stops every process too.
      payload = json.dumps({"result": work()}, default=str).encode()
    except Exception as e:  # pylint: disable=broad-except  # The failure must reach the other processes.
      group.allgather(json.dumps({"error": _describe(e)}).encode())
      raise
    group.allgather(payload)
  else:
    payload = group.allgather(b"")[0]
  reply = json.loads(payload)
  if "error" in reply:
    raise PeerError(f"process 0 stopped the run: {reply['error']}")
  return reply["result"]
