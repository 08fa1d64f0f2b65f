"""The Grain SFT pipeline: packing composition, resumable iteration, process sharding."""

import itertools
import json
import re

import grain
import numpy as np
import pytest
from data_records_fixtures import IM_END, ByteChatTokenizer, make_record

from ssd_jax.data.packing import ROW_KEYS, pack_examples
from ssd_jax.data.records import RecordShardWriter
from ssd_jax.data.sft_examples import sft_example_from_record
from ssd_jax.data.sft_pipeline import SftPipelineConfig, sft_dataset

TOK = ByteChatTokenizer()
SEQ_LEN = 160
DEGENERATE = {5: "", 11: "```python\npass\n```"}


def _completion(task):
  if task in DEGENERATE:
    return DEGENERATE[task]
  return f"x = {task}\n" * (40 if task % 7 == 3 else 1 + task % 4)  # some longer than a row


def _records():
  return [
    make_record(t, completion=_completion(t), finish_reason="length" if t % 4 == 0 else "stop") for t in range(30)
  ]


def _source():
  return grain.MapDataset.source(_records())


def _task_ids(batch):
  """The task of every packed segment, read back from the prompt text."""
  found = []
  for tokens, segments in zip(batch["tokens"], batch["segment_ids"]):
    for seg in range(1, segments.max() + 1):
      found += re.findall(r"Write f(\d+),", TOK.decode(tokens[segments == seg]))
  return [int(t) for t in found]


def test_one_epoch_in_order_equals_packing_the_examples(tmp_path):
  with RecordShardWriter(tmp_path, process_index=0, records_per_shard=7) as writer:
    for record in _records():
      writer.write(record)
  config = SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=1, shuffle=False, num_epochs=1)
  batches = list(sft_dataset(tmp_path, TOK, config, shard_index=0, shard_count=1))
  # Reference: the same steps written out by hand.
  examples = [
    sft_example_from_record(TOK, r, SEQ_LEN + 1, (IM_END,))
    for r in _records()
    if r.task_id not in {f"task-{t}" for t in DEGENERATE}
  ]
  rows, _ = pack_examples(examples, SEQ_LEN)
  assert any(len(e["tokens"]) == SEQ_LEN + 1 for e in examples)  # some were cut
  assert any(row["segment_ids"].max() > 2 for row in rows)  # some rows hold several
  assert len(batches) == len(rows)
  for batch, row in zip(batches, rows):
    for key in ROW_KEYS:
      assert batch[key].shape == (1, SEQ_LEN) and batch[key].dtype == np.int32
      np.testing.assert_array_equal(batch[key][0], row[key])


def test_resume_from_saved_state_reproduces_remaining_batches():
  config = SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=4, seed=3, num_epochs=3)
  dataset = sft_dataset(_source(), TOK, config, shard_index=1, shard_count=2)
  reference = list(dataset)
  assert len(reference) > 6
  for stop in (1, 4, len(reference) - 1):
    iterator = iter(dataset)
    for _ in range(stop):
      next(iterator)
    state = json.loads(json.dumps(iterator.get_state()))  # must survive a checkpoint file
    resumed = iter(sft_dataset(_source(), TOK, config, shard_index=1, shard_count=2))
    resumed.set_state(state)
    rest = list(resumed)
    assert len(rest) == len(reference) - stop
    for got, want in zip(rest, reference[stop:]):
      for key in ROW_KEYS:
        np.testing.assert_array_equal(got[key], want[key])


def test_shards_are_disjoint_and_cover_the_kept_records():
  config = SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=2, seed=0, num_epochs=1)
  seen = [
    list(
      itertools.chain.from_iterable(map(_task_ids, sft_dataset(_source(), TOK, config, shard_index=i, shard_count=2)))
    )
    for i in range(2)
  ]
  kept = set(range(30)) - set(DEGENERATE)
  assert not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == sorted(kept)


def test_shuffle_is_seeded_and_changes_each_epoch():
  def order(seed):
    config = SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=1, seed=seed, num_epochs=2)
    return list(
      itertools.chain.from_iterable(map(_task_ids, sft_dataset(_source(), TOK, config, shard_index=0, shard_count=1)))
    )

  first = order(7)
  assert first == order(7)
  assert first != order(8)
  n = len(first) // 2
  assert sorted(first[:n]) == sorted(first[n:]) == sorted(set(range(30)) - set(DEGENERATE))
  assert first[:n] != first[n:]


def test_bad_settings_are_errors():
  with pytest.raises(ValueError, match="not divisible"):
    sft_dataset(_source(), TOK, SftPipelineConfig(seq_len=8, global_batch_size=3), shard_index=0, shard_count=2)
  with pytest.raises(ValueError, match="shard_index"):
    sft_dataset(_source(), TOK, SftPipelineConfig(seq_len=8, global_batch_size=2), shard_index=2, shard_count=2)
  with pytest.raises(ValueError, match="seq_len"):
    SftPipelineConfig(seq_len=0, global_batch_size=1)


def test_unpacked_rows_hold_one_example_each_in_order():
  config = SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=2, shuffle=False, num_epochs=1, pack=False)
  batches = list(sft_dataset(_source(), TOK, config, shard_index=0, shard_count=1))
  examples = [
    sft_example_from_record(TOK, r, SEQ_LEN + 1, (IM_END,))
    for r in _records()
    if r.task_id not in {f"task-{t}" for t in DEGENERATE}
  ]
  rows = [row for batch in batches for row in (dict(zip(batch, values)) for values in zip(*batch.values()))]
  assert len(rows) == len(examples) // 2 * 2  # The last odd example does not fill a batch.
  for row, example in zip(rows, examples):
    assert row["segment_ids"].max() == 1  # Alone in its row.
    n = len(example["tokens"]) - 1
    np.testing.assert_array_equal(row["tokens"][:n], example["tokens"][:-1])
    np.testing.assert_array_equal(row["targets"][:n], example["tokens"][1:])
    np.testing.assert_array_equal(row["loss_mask"][:n], example["loss_mask"][1:])
    np.testing.assert_array_equal(row["positions"][:n], np.arange(n))
    assert not row["segment_ids"][n:].any() and not row["loss_mask"][n:].any()  # Padding.
  assert _task_ids(batches[0]) == [0, 1]
