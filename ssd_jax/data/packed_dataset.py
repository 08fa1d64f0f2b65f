"""Packing as a Grain dataset: an example IterDataset -> an IterDataset of packed rows, checkpointable.

The rows are `packing.SequencePacker`'s. The iterator's state is its parent's state just before the first
example of the open row, so `get_state` / `set_state` continue with exactly the rows that would have followed.
"""

from __future__ import annotations

from typing import Any

import grain

from ssd_jax.data.packing import SequencePacker


class _PackedDatasetIterator(grain.DatasetIterator):
  """Packs the parent's examples into rows; its state is a parent state.

  Rows hold consecutive examples and the packer starts empty at every row boundary, so
  the parent's state just before the first example of the open row reproduces all the
  rows still to come.
  """

  def __init__(self, parent: grain.DatasetIterator, seq_len: int):
    super().__init__(parent)
    self._packer = SequencePacker(seq_len)
    self._open_row_start: dict[str, Any] | None = None

  def __next__(self):
    while True:
      before = self._parent.get_state()
      try:
        example = next(self._parent)
      except StopIteration:
        row = self._packer.flush()
        if row is None:
          raise
        return row
      was_empty = self._packer.is_empty
      row = self._packer.add(example)
      if row is not None or (was_empty and not self._packer.is_empty):
        self._open_row_start = before
      if row is not None:
        return row

  def get_state(self) -> dict[str, Any]:
    if self._packer.is_empty:
      return {"parent": self._parent.get_state()}
    return {"parent": self._open_row_start}

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self._packer = SequencePacker(self._packer.seq_len)
    self._open_row_start = None


class PackedIterDataset(grain.IterDataset):
  """Grain IterDataset of packed rows (`packing.SequencePacker`) over an example dataset."""

  def __init__(self, parent: grain.IterDataset, seq_len: int):
    super().__init__(parent)
    self._seq_len = seq_len

  def __iter__(self) -> grain.DatasetIterator:
    return _PackedDatasetIterator(self._parent.__iter__(), self._seq_len)

  def __str__(self) -> str:
    return f"PackedIterDataset(seq_len={self._seq_len})"
