"""The Grain SFT pipeline: packing composition, resumable iteration, process sharding, example counts."""

import contextlib
import dataclasses
import itertools
import json
import re
import signal

import grain
import numpy as np
import pytest
from data_records_fixtures import IM_END, ByteChatTokenizer, make_record

from ssd_jax.data.packing import ROW_KEYS, pack_examples
from ssd_jax.data.records import RecordShardWriter
from ssd_jax.data.sft_examples import sft_example_from_record
from ssd_jax.data.sft_pipeline import SftPipelineConfig, conversation_dataset, sft_dataset

TOK = ByteChatTokenizer()
SEQ_LEN = 160
DEGENERATE = {5: "", 11: "```python\npass\n```"}


def _completion(task):
  if task in DEGENERATE:
    return DEGENERATE[task]
  return f"x = {task}\n" * (40 if task % 7 == 3 else 1 + task % 4)  # some longer than a row


def _record(task, **fields):
  """A record whose prompt ids, unless given, are its chat messages' (as the sampler's are): SFT trains on them."""
  record = make_record(task, **fields)
  if "prompt_ids" in fields:
    return record
  return dataclasses.replace(
    record, prompt_ids=TOK.encode(TOK.apply_chat_template(record.prompt_messages, add_generation_prompt=True))
  )


def _records():
  return [_record(t, completion=_completion(t), finish_reason="length" if t % 4 == 0 else "stop") for t in range(30)]


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
  dataset, _ = sft_dataset(tmp_path, TOK, config, shard_index=0, shard_count=1)
  batches = list(dataset)
  # Reference: the same steps written out by hand.
  examples = [
    sft_example_from_record(r, SEQ_LEN + 1, (IM_END,))
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
  dataset, _ = sft_dataset(_source(), TOK, config, shard_index=1, shard_count=2)
  reference = list(dataset)
  assert len(reference) > 6
  for stop in (1, 4, len(reference) - 1):
    iterator = iter(dataset)
    for _ in range(stop):
      next(iterator)
    state = json.loads(json.dumps(iterator.get_state()))  # must survive a checkpoint file
    resumed = iter(sft_dataset(_source(), TOK, config, shard_index=1, shard_count=2)[0])
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
      itertools.chain.from_iterable(
        map(_task_ids, sft_dataset(_source(), TOK, config, shard_index=i, shard_count=2)[0])
      )
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
      itertools.chain.from_iterable(
        map(_task_ids, sft_dataset(_source(), TOK, config, shard_index=0, shard_count=1)[0])
      )
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
  with pytest.raises(ValueError, match="max_example_len must be in \\[2, seq_len \\+ 1 = 9\\]"):
    SftPipelineConfig(seq_len=8, global_batch_size=1, max_example_len=10)


def test_unpacked_rows_hold_one_example_each_in_order():
  config = SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=2, shuffle=False, num_epochs=1, pack=False)
  batches = list(sft_dataset(_source(), TOK, config, shard_index=0, shard_count=1)[0])
  examples = [
    sft_example_from_record(r, SEQ_LEN + 1, (IM_END,))
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


@contextlib.contextmanager
def _within(seconds):
  """Raises TimeoutError in the block after `seconds`, so that a pipeline that spins fails the test."""

  def expire(*_):
    raise TimeoutError(f"no batch and no error after {seconds} s")

  previous = signal.signal(signal.SIGALRM, expire)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _first_batch(records, config):
  dataset, _ = sft_dataset(grain.MapDataset.source(records), TOK, config, shard_index=0, shard_count=1)
  return next(iter(dataset))


def test_all_records_degenerate_is_an_error_not_an_endless_iterator():
  records = [_record(t, completion=c) for t, c in enumerate(["", "   \n", "```python\npass\n```"] * 3)]
  with _within(20), pytest.raises(ValueError, match=r"all 9 records of shard 0 of 1 were filtered out.*: 9 degenerate"):
    _first_batch(records, SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=2))


def test_prompts_filling_every_row_are_an_error_not_an_endless_iterator():
  records = [_record(t, prompt_ids=list(range(4, 5 + SEQ_LEN))) for t in range(3)]
  with _within(20), pytest.raises(ValueError, match=r"all 3 records .*: 0 degenerate .*, 3 with no response .*prompt"):
    _first_batch(records, SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=2))


def test_counts_of_truncated_and_dropped_examples():
  records = _records() + [_record(30, prompt_ids=list(range(4, 5 + SEQ_LEN)))]  # a prompt filling the row
  config = SftPipelineConfig(seq_len=SEQ_LEN, global_batch_size=1, shuffle=False, num_epochs=1)
  dataset, counts = sft_dataset(grain.MapDataset.source(records), TOK, config, shard_index=0, shard_count=1)
  # Reference: whole examples, measured by hand.
  kept = [r for r in records if r.task_id not in {f"task-{t}" for t in DEGENERATE} | {"task-30"}]
  long = [r for r in kept if len(sft_example_from_record(r, None, (IM_END,))["tokens"]) > SEQ_LEN + 1]
  assert len(long) == 4 and any(r.finish_reason == "stop" for r in long)
  assert (counts.read, counts.degenerate, counts.no_response, counts.truncated) == (31, 2, 1, 4)
  assert counts.kept == len(kept) == 28
  assert str(counts) == (
    f"31 read, 4 truncated to {SEQ_LEN + 1} tokens (their end-of-turn token is lost), 2 dropped as degenerate "
    f"(empty output or one-line stub), 1 dropped with no response token in the first {SEQ_LEN + 1} (the prompt fills "
    "the row, or the response is empty), 28 trained on"
  )
  # Every kept example is trained on once per epoch: a truncated one ends without its end-of-turn token.
  batches = list(dataset)
  assert sorted(itertools.chain.from_iterable(map(_task_ids, batches))) == sorted(int(r.task_id[5:]) for r in kept)
  trained_ends = sum(int(((b["targets"] == IM_END) & (b["loss_mask"] == 1)).sum()) for b in batches)
  assert trained_ends == sum(r.finish_reason == "stop" for r in kept) - sum(r.finish_reason == "stop" for r in long)


def test_conversation_rows_count_the_answers_a_short_row_cuts_or_loses():
  """Pre-training pairs: the count says which answers the rows cut or lose, and the rows stay as they were."""

  def pairs(prompt_chars):
    return [([{"role": "user", "content": "q" * n}], "answer") for n in prompt_chars]

  conversations = pairs([5, 40, 200])
  dataset, counts = conversation_dataset(TOK, conversations, seq_len=64, global_batch_size=2, seed=0)
  assert (counts.read, counts.truncated, counts.no_response) == (3, 1, 1)  # 40: cut; 200: its answer is lost
  assert next(iter(dataset))["tokens"].shape == (2, 64)
  _, whole = conversation_dataset(TOK, conversations, seq_len=512, global_batch_size=2, seed=0)
  assert (whole.truncated, whole.no_response) == (0, 0)
