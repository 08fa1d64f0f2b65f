"""The Grain SFT input pipeline: sample records -> SFT examples -> packed rows -> batches.

  records (MapDataset)  -> this process's shard (every shard_count-th record)
                        -> drop degenerate completions (optional)
                        -> shuffle (seeded, reshuffled every epoch) -> repeat
                        -> build_sft_example; drop examples with no response token
                        -> to_iter_dataset -> pack into rows -> batch

Each process gets `global_batch_size // shard_count` rows per batch, int32 arrays
`tokens`, `targets`, `loss_mask`, `segment_ids`, `positions` of shape
[per_process_batch, seq_len] (see `packing`), ready for `sharding.shard_batch`.

The iterator is checkpointable: `it = iter(dataset)`, `state = it.get_state()` (a
JSON-serialisable dict), later `it.set_state(state)` continues with exactly the batches
that would have followed. Hosts pack different data, so they may produce different
numbers of rows per epoch; train for a number of steps with `num_epochs=None` (repeat
forever) so that no host runs out before the others.

`conversation_dataset` packs (messages, answer) pairs the same way, for training on a corpus that is not
sample records (the built-in task's pre-training).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import grain
import jax

from ssd_jax.data.degenerate import is_degenerate
from ssd_jax.data.packing import SequencePacker
from ssd_jax.data.records import record_dataset
from ssd_jax.data.sample_record import SampleRecord
from ssd_jax.data.sft_examples import ChatTokenizer, build_sft_example, end_of_turn_ids, sft_example_from_record


@dataclasses.dataclass(frozen=True)
class SftPipelineConfig:
  """Settings of the SFT input pipeline.

  Attributes:
    seq_len: slots per packed row.
    global_batch_size: rows per step over all processes.
    seed: shuffle seed; the same seed gives the same order on every run.
    shuffle: shuffle records (differently each epoch).
    num_epochs: passes over the records; None repeats forever.
    max_example_len: tokens kept per example; None means seq_len + 1 (one full row).
    drop_degenerate: drop empty outputs and one-line stubs (`degenerate.is_degenerate`).
    read_threads: threads that read and tokenise records.
  """

  seq_len: int
  global_batch_size: int
  seed: int = 0
  shuffle: bool = True
  num_epochs: int | None = None
  max_example_len: int | None = None
  drop_degenerate: bool = True
  read_threads: int = 4

  def __post_init__(self):
    for name in ("seq_len", "global_batch_size", "read_threads"):
      if getattr(self, name) < 1:
        raise ValueError(f"SftPipelineConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise ValueError(f"SftPipelineConfig.num_epochs must be >= 1 or None, got {self.num_epochs}")
    if self.max_example_len is not None and self.max_example_len < 2:
      raise ValueError(f"SftPipelineConfig.max_example_len must be >= 2, got {self.max_example_len}")


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


def sft_dataset(
  records: grain.MapDataset | str | os.PathLike,
  tokenizer: ChatTokenizer,
  config: SftPipelineConfig,
  *,
  shard_index: int | None = None,
  shard_count: int | None = None,
) -> grain.IterDataset:
  """Builds this process's SFT batch dataset.

  Args:
    records: a MapDataset of `SampleRecord`s, or a record directory (`records.record_dataset`).
    tokenizer: the model's tokenizer with its chat template.
    config: pipeline settings.
    shard_index, shard_count: which share of the records this process reads; default
      `jax.process_index()` and `jax.process_count()`. All processes must see the same
      records in the same order.

  Returns:
    An IterDataset of dicts of int32 [global_batch_size // shard_count, seq_len] arrays;
    `iter(...)` gives a checkpointable iterator.
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index must be in [0, shard_count={shard_count}), got {shard_index}")
  if config.global_batch_size % shard_count:
    raise ValueError(f"global_batch_size {config.global_batch_size} is not divisible by the shard count {shard_count}")
  if not isinstance(records, grain.MapDataset):
    records = record_dataset(records)
  records = records[shard_index::shard_count]
  if len(records) == 0:
    raise ValueError(f"shard {shard_index} of {shard_count} holds no records")
  if config.drop_degenerate:
    records = records.filter(lambda r: is_degenerate(r.completion_text) is None)
  if config.shuffle:
    records = records.shuffle(seed=config.seed)
  records = records.repeat(config.num_epochs)

  max_len = config.max_example_len or config.seq_len + 1
  end_ids = end_of_turn_ids(tokenizer)

  def to_example(record: SampleRecord):
    return sft_example_from_record(tokenizer, record, max_len, end_ids)

  examples = records.map(to_example).filter(lambda ex: bool(ex["loss_mask"][1:].any()))
  examples = examples.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads))
  rows = PackedIterDataset(examples, config.seq_len)
  return rows.batch(config.global_batch_size // shard_count, drop_remainder=True)


Conversation = tuple[Sequence[dict[str, str]], str]  # (prompt messages, answer text)


def conversation_dataset(
  tokenizer: ChatTokenizer,
  conversations: Sequence[Conversation],
  *,
  seq_len: int,
  global_batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
) -> grain.IterDataset:
  """Packed, batched SFT rows from (messages, answer) pairs, repeated forever in reshuffled epochs.

  Args:
    tokenizer: the chat tokenizer.
    conversations: prompt messages with the answer to train on (loss on the answer and end of turn).
    seq_len: slots per packed row.
    global_batch_size: rows per step over all processes.
    seed: shuffle seed.
    shard_index, shard_count: this process's share of the conversations.

  Returns:
    An IterDataset of dicts of int32 [global_batch_size // shard_count, seq_len] arrays whose iterator
    is checkpointable.
  """
  if global_batch_size % shard_count:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by {shard_count} processes")
  end_ids = end_of_turn_ids(tokenizer)

  def to_example(conversation: Conversation):
    messages, answer = conversation
    return build_sft_example(tokenizer, messages, answer, seq_len + 1, end_ids=end_ids)

  dataset = grain.MapDataset.source(list(conversations))[shard_index::shard_count]
  dataset = dataset.shuffle(seed=seed).repeat(None).map(to_example)
  dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2))
  return PackedIterDataset(dataset, seq_len).batch(global_batch_size // shard_count, drop_remainder=True)
