"""The Grain SFT input pipeline: sample records -> SFT examples -> packed rows -> batches.

  records (MapDataset)  -> this process's shard (every shard_count-th record)
                        -> one pass over the shard: drop degenerate completions (optional) and
                           examples with no response token; count them and the examples cut
                           (`SftExampleCounts`); fail when nothing is left
                        -> shuffle (seeded, reshuffled every epoch) -> repeat
                        -> sft_example_from_record, cut to max_example_len
                        -> to_iter_dataset -> pack into rows -> batch
                           (or, unpacked: one example per row, padded) -> batch

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

import collections
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import grain
import jax

from ssd_jax.data.degenerate import is_degenerate
from ssd_jax.data.packed_dataset import PackedIterDataset
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
    max_example_len: tokens kept per example, at most seq_len + 1 (one full row, the default).
    drop_degenerate: drop empty outputs and one-line stubs (`degenerate.is_degenerate`).
    read_threads: threads that read and tokenise records.
    pack: pack several examples per row; False gives one example per row, padded to seq_len (the SSD
      paper rows' SFT; fewer tokens per step, no example attends across a segment boundary either way).
  """

  seq_len: int
  global_batch_size: int
  seed: int = 0
  shuffle: bool = True
  num_epochs: int | None = None
  max_example_len: int | None = None
  drop_degenerate: bool = True
  read_threads: int = 4
  pack: bool = True

  def __post_init__(self):
    for name in ("seq_len", "global_batch_size", "read_threads"):
      if getattr(self, name) < 1:
        raise ValueError(f"SftPipelineConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise ValueError(f"SftPipelineConfig.num_epochs must be >= 1 or None, got {self.num_epochs}")
    if self.max_example_len is not None and not 2 <= self.max_example_len <= self.seq_len + 1:
      raise ValueError(
        f"SftPipelineConfig.max_example_len must be in [2, seq_len + 1 = {self.seq_len + 1}] (a longer example "
        f"does not fit a row), got {self.max_example_len}"
      )


# What building an SFT example did with a record.
_DEGENERATE, _NO_RESPONSE, _TRUNCATED, _WHOLE = "degenerate", "no_response", "truncated", "whole"


@dataclasses.dataclass(frozen=True)
class SftExampleCounts:
  """What became of one process's records as SFT examples.

  Attributes:
    read: records in this process's shard.
    degenerate: dropped as degenerate (empty output or one-line stub).
    no_response: dropped because no response token is within the first max_len tokens (the prompt fills
      the row, or the response is empty).
    truncated: kept but cut to max_len tokens; they lose their end and its end-of-turn token.
    max_len: tokens kept per example.
  """

  read: int
  degenerate: int
  no_response: int
  truncated: int
  max_len: int

  @property
  def kept(self) -> int:
    """Records trained on, whole or cut."""
    return self.read - self.degenerate - self.no_response

  def __str__(self) -> str:
    return (
      f"{self.read} read, {self.truncated} truncated to {self.max_len} tokens (their end-of-turn token is lost), "
      f"{self.degenerate} dropped as degenerate (empty output or one-line stub), {self.no_response} dropped "
      f"with no response token in the first {self.max_len} (the prompt fills the row, or the response is empty), "
      f"{self.kept} trained on"
    )


def _fate(example: dict[str, Any], max_len: int) -> str:
  """What keeping an example's first `max_len` tokens leaves: no response token, a cut example, or the whole."""
  if not example["loss_mask"][1:max_len].any():  # No target in the kept part is a response token.
    return _NO_RESPONSE
  return _TRUNCATED if len(example["tokens"]) > max_len else _WHOLE


def sft_dataset(
  records: grain.MapDataset | str | os.PathLike,
  tokenizer: ChatTokenizer,
  config: SftPipelineConfig,
  *,
  shard_index: int | None = None,
  shard_count: int | None = None,
) -> tuple[grain.IterDataset, SftExampleCounts]:
  """Builds this process's SFT batch dataset.

  Reads and tokenises every record of this process's shard once, up front, to drop the ones with nothing to
  train on and to count them; a shard with nothing left is an error here rather than an iterator that never
  yields.

  Args:
    records: a MapDataset of `SampleRecord`s, or a record directory (`records.record_dataset`).
    tokenizer: the model's tokenizer with its chat template.
    config: pipeline settings.
    shard_index, shard_count: which share of the records this process reads; default
      `jax.process_index()` and `jax.process_count()`. All processes must see the same
      records in the same order.

  Returns:
    (an IterDataset of dicts of int32 [global_batch_size // shard_count, seq_len] arrays, whose
    `iter(...)` gives a checkpointable iterator; what became of this shard's records).

  Raises:
    ValueError: bad shard settings, or no record of the shard gives an example to train on.
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index must be in [0, shard_count={shard_count}), got {shard_index}")
  if config.global_batch_size % shard_count:
    raise ValueError(f"global_batch_size {config.global_batch_size} is not divisible by the shard count {shard_count}")
  if not isinstance(records, grain.MapDataset):
    records = record_dataset(records)
  shard = records[shard_index::shard_count]
  if len(shard) == 0:
    raise ValueError(f"shard {shard_index} of {shard_count} holds no records")
  max_len = config.max_example_len or config.seq_len + 1
  end_ids = end_of_turn_ids(tokenizer)

  def fate(record: SampleRecord) -> str:
    if config.drop_degenerate and is_degenerate(record.completion_text) is not None:
      return _DEGENERATE
    return _fate(sft_example_from_record(record, None, end_ids), max_len)

  fates = list(shard.map(fate).to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads)))
  tally = collections.Counter(fates)
  counts = SftExampleCounts(len(shard), tally[_DEGENERATE], tally[_NO_RESPONSE], tally[_TRUNCATED], max_len)
  if not counts.kept:
    raise ValueError(
      f"all {counts.read} records of shard {shard_index} of {shard_count} were filtered out, nothing to train "
      f"on: {counts.degenerate} degenerate (empty output or one-line stub; config drop_degenerate), "
      f"{counts.no_response} with no response token in the first {max_len} tokens (the prompt fills them, or "
      "the response is empty)"
    )
  # Filtered in place (not a list of the kept ones) so that the shuffle permutes the whole shard: the kept
  # records come in the order they always came in, and a saved iterator position means what it meant.
  kept = [f in (_TRUNCATED, _WHOLE) for f in fates]
  kept_records = grain.MapDataset.range(len(shard)).filter(lambda i: kept[i])
  if config.shuffle:
    kept_records = kept_records.shuffle(seed=config.seed)
  kept_records = kept_records.repeat(config.num_epochs).map(lambda i: shard[i])

  def to_example(record: SampleRecord):
    return sft_example_from_record(record, max_len, end_ids)

  examples = kept_records.map(to_example)
  if config.pack:
    examples = examples.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads))
    rows = PackedIterDataset(examples, config.seq_len)
  else:
    rows = examples.map(lambda ex: single_row(ex, config.seq_len))
    rows = rows.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads))
  return rows.batch(config.global_batch_size // shard_count, drop_remainder=True), counts


def single_row(example: dict[str, Any], seq_len: int) -> dict[str, Any]:
  """One example alone in a padded row of `seq_len` slots (cut to seq_len + 1 tokens like packing does)."""
  packer = SequencePacker(seq_len)
  packer.add(example)
  return packer.flush()


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
) -> tuple[grain.IterDataset, SftExampleCounts]:
  """Packed, batched SFT rows from (messages, answer) pairs, repeated forever in reshuffled epochs.

  Every pair is tokenised once up front to count those cut at `seq_len + 1` tokens and those left with no
  answer token (they stay in the stream, so the rows do not depend on the count).

  Args:
    tokenizer: the chat tokenizer.
    conversations: prompt messages with the answer to train on (loss on the answer and end of turn).
    seq_len: slots per packed row.
    global_batch_size: rows per step over all processes.
    seed: shuffle seed.
    shard_index, shard_count: this process's share of the conversations.

  Returns:
    (an IterDataset of dicts of int32 [global_batch_size // shard_count, seq_len] arrays whose iterator is
    checkpointable; what becomes of this shard's pairs: `no_response` of them train nothing).
  """
  if global_batch_size % shard_count:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by {shard_count} processes")
  end_ids = end_of_turn_ids(tokenizer)
  shard = list(conversations)[shard_index::shard_count]
  fates = collections.Counter(
    _fate(build_sft_example(tokenizer, messages, answer, None, end_ids=end_ids), seq_len + 1)
    for messages, answer in shard
  )
  counts = SftExampleCounts(len(shard), 0, fates[_NO_RESPONSE], fates[_TRUNCATED], seq_len + 1)

  def to_example(conversation: Conversation):
    messages, answer = conversation
    return build_sft_example(tokenizer, messages, answer, seq_len + 1, end_ids=end_ids)

  dataset = grain.MapDataset.source(shard)
  dataset = dataset.shuffle(seed=seed).repeat(None).map(to_example)
  dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2))
  return PackedIterDataset(dataset, seq_len).batch(global_batch_size // shard_count, drop_remainder=True), counts
