"""Packing examples into fixed-length rows with segment ids."""

import numpy as np
import pytest

from ssd_jax.data.packing import ROW_KEYS, SequencePacker, pack_examples


def _ex(tokens, mask):
  return {"tokens": np.asarray(tokens, np.int32), "loss_mask": np.asarray(mask, np.int32)}


def test_hand_checked_rows():
  examples = [
    _ex([10, 11, 12, 13], [0, 0, 1, 1]),
    _ex([20, 21, 22], [0, 1, 1]),
    _ex([30, 31, 32, 33, 34, 35], [0, 0, 0, 1, 1, 1]),
  ]
  rows, stats = pack_examples(examples, seq_len=8)
  assert len(rows) == 2 and stats.rows == 2 and stats.truncated == stats.skipped == 0
  expected = [
    dict(
      tokens=[10, 11, 12, 20, 21, 0, 0, 0],
      targets=[11, 12, 13, 21, 22, 0, 0, 0],
      loss_mask=[0, 1, 1, 1, 1, 0, 0, 0],
      segment_ids=[1, 1, 1, 2, 2, 0, 0, 0],
      positions=[0, 1, 2, 0, 1, 0, 0, 0],
    ),
    dict(
      tokens=[30, 31, 32, 33, 34, 0, 0, 0],
      targets=[31, 32, 33, 34, 35, 0, 0, 0],
      loss_mask=[0, 0, 1, 1, 1, 0, 0, 0],
      segment_ids=[1, 1, 1, 1, 1, 0, 0, 0],
      positions=[0, 1, 2, 3, 4, 0, 0, 0],
    ),
  ]
  for row, want in zip(rows, expected):
    assert set(row) == set(ROW_KEYS)
    for key in ROW_KEYS:
      assert row[key].dtype == np.int32
      assert row[key].tolist() == want[key], key


def test_truncation_and_skipping_are_counted():
  rows, stats = pack_examples([_ex([5], [1]), _ex(range(100, 112), [0] * 3 + [1] * 9), _ex([7, 8], [0, 1])], seq_len=8)
  assert (stats.examples, stats.skipped, stats.truncated, stats.rows) == (3, 1, 1, 2)
  assert rows[0]["tokens"].tolist() == list(range(100, 108))
  assert rows[0]["targets"].tolist() == list(range(101, 109))
  assert rows[0]["loss_mask"].tolist() == [0, 0] + [1] * 6
  assert rows[1]["tokens"].tolist() == [7] + [0] * 7 and rows[1]["targets"][0] == 8


def test_exactly_full_row_is_closed_by_next_example():
  packer = SequencePacker(4)
  assert packer.add(_ex([1, 2, 3, 4, 5], [1] * 5)) is None
  closed = packer.add(_ex([6, 7], [1, 1]))
  assert closed["tokens"].tolist() == [1, 2, 3, 4] and closed["segment_ids"].tolist() == [1] * 4
  assert packer.flush()["tokens"].tolist() == [6, 0, 0, 0]
  assert packer.flush() is None


def test_bad_example_is_an_error():
  with pytest.raises(ValueError, match="same length"):
    SequencePacker(4).add(_ex([1, 2, 3], [1, 1]))


def _segments_of(row):
  """Splits a row back into (tokens+last target, loss_mask[1:], positions) per segment."""
  out = []
  for seg in range(1, row["segment_ids"].max() + 1):
    where = row["segment_ids"] == seg
    idx = np.flatnonzero(where)
    assert np.all(np.diff(idx) == 1), "segment not contiguous"
    assert row["positions"][where].tolist() == list(range(len(idx))), "positions restart per segment"
    # Inside a segment, each target is the next input: nothing crosses a boundary.
    np.testing.assert_array_equal(row["targets"][idx[:-1]], row["tokens"][idx[1:]])
    out.append((np.r_[row["tokens"][where], row["targets"][idx[-1]]], row["loss_mask"][where]))
  return out


def test_invariants_on_random_examples():
  rng = np.random.default_rng(0)
  seq_len = 16
  examples = [_ex(rng.integers(1, 50, n), rng.integers(0, 2, n)) for n in rng.integers(1, 25, 60)]
  rows, stats = pack_examples(examples, seq_len)
  assert stats.rows == len(rows)
  recovered = [seg for row in rows for seg in _segments_of(row)]
  # Brute-force reference: every example with >= 2 tokens, cut to seq_len + 1, in order.
  reference = [(e["tokens"][: seq_len + 1], e["loss_mask"][1 : seq_len + 1]) for e in examples if len(e["tokens"]) >= 2]
  assert len(recovered) == len(reference)
  for (tokens, mask), (want_tokens, want_mask) in zip(recovered, reference):
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(mask, want_mask)
  for row in rows:
    pad = row["segment_ids"] == 0
    for key in ROW_KEYS:
      assert not row[key][pad].any(), f"{key} not zero on padding"
    assert pad.tolist() == sorted(pad.tolist()), "padding only at the end"
  assert stats.truncated == sum(len(e["tokens"]) > seq_len + 1 for e in examples)
  # Sequential packing: a row was closed only because the next segment did not fit.
  used = [int((r["segment_ids"] > 0).sum()) for r in rows]
  first_len = [len(_segments_of(r)[0][0]) - 1 for r in rows]
  assert all(u + f > seq_len for u, f in zip(used[:-1], first_len[1:]))


def test_packed_forward_matches_separate_forwards():
  model_lib = pytest.importorskip("ssd_jax.model")
  import jax
  from flax import nnx

  cfg = model_lib.presets.get("tiny_qwen3")
  graphdef, state = nnx.split(model_lib.Transformer(cfg, rngs=nnx.Rngs(0)))

  rng = np.random.default_rng(1)
  lengths = (5, 7, 4)
  examples = [_ex(rng.integers(1, cfg.vocab_size, n), np.ones(n)) for n in lengths]
  seq_len = 16
  (row,), _ = pack_examples(examples, seq_len)
  # Row 0 is the packed row; row i is example i alone, right-padded (padding after a causal
  # prefix cannot change it). One call, so one compile.
  tokens = np.zeros((1 + len(examples), seq_len), np.int32)
  tokens[0] = row["tokens"]
  for i, example in enumerate(examples, start=1):
    tokens[i, : len(example["tokens"]) - 1] = example["tokens"][:-1]
  positions = np.broadcast_to(np.arange(seq_len, dtype=np.int32), tokens.shape).copy()
  positions[0] = row["positions"]
  segment_ids = np.ones_like(tokens)
  segment_ids[0] = row["segment_ids"]
  logits, _ = jax.jit(lambda s, *a: nnx.merge(graphdef, s)(a[0], a[1], segment_ids=a[2]))(
    state, tokens, positions, segment_ids
  )
  logits = np.asarray(logits)
  for i, n in enumerate(lengths, start=1):
    np.testing.assert_allclose(logits[0, row["segment_ids"] == i], logits[i, : n - 1], rtol=1e-4, atol=1e-4)
