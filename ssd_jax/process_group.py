"""The processes of a run as one group: who this process is, and an all-gather of byte strings between them.

Host-side work that every process does the same way (grading samples in a sandbox, say) can be split by
`index` / `count` and the pieces exchanged with `allgather`; JAX's collectives carry the bytes, so it works
wherever the run's devices talk to each other (gloo on CPU, ICI/DCN on TPU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils


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
  lengths = np.asarray(multihost_utils.process_allgather(np.array([len(payload)], np.int32))).reshape(-1)
  row = np.zeros([max(int(lengths.max()), 1)], np.uint8)
  row[: len(payload)] = np.frombuffer(payload, np.uint8)
  rows = np.asarray(multihost_utils.process_allgather(row))  # [count, width]
  return [rows[i, : int(n)].tobytes() for i, n in enumerate(lengths)]


def current() -> ProcessGroup:
  """The run's processes as JAX sees them (a group of one when JAX runs a single process)."""
  if jax.process_count() == 1:
    return single_process()
  return ProcessGroup(jax.process_index(), jax.process_count(), _jax_allgather)
