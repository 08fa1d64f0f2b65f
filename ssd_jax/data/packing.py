"""Sequence packing: variable-length examples into fixed-length rows with segment ids.

An example `{'tokens': [n], 'loss_mask': [n]}` becomes one segment of n - 1 slots:
inputs `tokens[:-1]`, targets `tokens[1:]`, loss mask `loss_mask[1:]` (a slot is trained
when its target is a response token). Shifting inside the example before packing means a
target never crosses into another segment. Each packed row holds, all int32 [seq_len]:

  tokens       input ids; 0 on padding.
  targets      next token of the same segment; 0 on padding.
  loss_mask    1 where targets[t] is a response token; 0 on padding.
  segment_ids  1, 2, ... per segment in the row; 0 on padding.
  positions    0, 1, ... restarting at each segment; 0 on padding.

Packing is sequential and deterministic: a segment goes into the open row if it fits,
otherwise the open row is closed (padded) and the segment starts the next one. Examples
longer than seq_len + 1 tokens are cut to seq_len + 1 (counted as truncated); examples
with fewer than 2 tokens have no target and are skipped (counted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np

ROW_KEYS = ("tokens", "targets", "loss_mask", "segment_ids", "positions")


@dataclasses.dataclass
class PackingStats:
  """Running counts of what the packer did."""

  examples: int = 0
  truncated: int = 0
  skipped: int = 0
  rows: int = 0


class SequencePacker:
  """Packs examples one at a time into rows of `seq_len` slots.

  `add` returns the previous row when the new example does not fit in it, so each call
  yields at most one row; `flush` returns the last, partly filled row.
  """

  def __init__(self, seq_len: int):
    if seq_len < 1:
      raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    self.seq_len = seq_len
    self.stats = PackingStats()
    self._segments: list[tuple[np.ndarray, np.ndarray]] = []
    self._used = 0

  @property
  def is_empty(self) -> bool:
    """Whether the open row holds no segment."""
    return not self._segments

  def add(self, example: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Adds one example; returns the row it closed, if any.

    Args:
      example: {'tokens': int [n], 'loss_mask': int [n]}.
    """
    tokens = np.asarray(example["tokens"])
    loss_mask = np.asarray(example["loss_mask"])
    if tokens.ndim != 1 or tokens.shape != loss_mask.shape:
      raise ValueError(
        f"example tokens {tokens.shape} and loss_mask {loss_mask.shape} must be 1-D arrays of the same length"
      )
    self.stats.examples += 1
    if tokens.shape[0] < 2:
      self.stats.skipped += 1
      return None
    if tokens.shape[0] > self.seq_len + 1:
      self.stats.truncated += 1
      tokens, loss_mask = tokens[: self.seq_len + 1], loss_mask[: self.seq_len + 1]
    closed = None
    if self._used + tokens.shape[0] - 1 > self.seq_len:
      closed = self._close_row()
    self._segments.append((tokens, loss_mask))
    self._used += tokens.shape[0] - 1
    return closed

  def flush(self) -> dict[str, np.ndarray] | None:
    """Closes and returns the open row, or None when it is empty."""
    return None if self.is_empty else self._close_row()

  def _close_row(self) -> dict[str, np.ndarray]:
    row = {key: np.zeros(self.seq_len, np.int32) for key in ROW_KEYS}
    start = 0
    for segment_id, (tokens, loss_mask) in enumerate(self._segments, start=1):
      end = start + tokens.shape[0] - 1
      row["tokens"][start:end] = tokens[:-1]
      row["targets"][start:end] = tokens[1:]
      row["loss_mask"][start:end] = loss_mask[1:]
      row["segment_ids"][start:end] = segment_id
      row["positions"][start:end] = np.arange(end - start)
      start = end
    self._segments, self._used = [], 0
    self.stats.rows += 1
    return row


def pack_examples(
  examples: Iterable[Mapping[str, np.ndarray]], seq_len: int
) -> tuple[list[dict[str, np.ndarray]], PackingStats]:
  """Packs a finite sequence of examples.

  Returns:
    (rows, each a dict of int32 [seq_len] arrays keyed by ROW_KEYS; the packer's counts).
  """
  packer = SequencePacker(seq_len)
  rows = [row for row in map(packer.add, examples) if row is not None]
  last = packer.flush()
  if last is not None:
    rows.append(last)
  return rows, packer.stats
