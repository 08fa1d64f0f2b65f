"""Shared helpers for the trainer tests: a tiny float32 model, packed SFT batches, a resumable iterator."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssd_jax.model import presets
from ssd_jax.model.transformer import Transformer

BATCH, LENGTH = 4, 16


def tiny_config():
  return presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")


@functools.cache
def tiny_model_state(seed: int = 0):
  """(graphdef, params) of the tiny float32 Qwen3-style model, cached: copy params before donating."""
  return nnx.split(Transformer(tiny_config(), rngs=nnx.Rngs(seed)))


def copy_tree(tree):
  """Fresh buffers (the train step donates its state)."""
  return jax.tree.map(jnp.copy, tree)


def make_batch(seed: int, batch: int = BATCH, length: int = LENGTH) -> dict[str, np.ndarray]:
  """Rows packed with two segments and trailing padding; loss on the second half of each segment."""
  rng = np.random.default_rng(seed)
  vocab = tiny_config().vocab_size
  tokens = rng.integers(1, vocab, (batch, length), dtype=np.int32)
  targets = np.concatenate([tokens[:, 1:], np.zeros((batch, 1), np.int32)], axis=1)
  segment_ids = np.zeros((batch, length), np.int32)
  positions = np.zeros((batch, length), np.int32)
  loss_mask = np.zeros((batch, length), np.int32)
  for row in range(batch):
    first = int(rng.integers(3, length // 2))
    second = int(rng.integers(3, length - first + 1))
    for segment, (start, size) in enumerate([(0, first), (first, second)], start=1):
      segment_ids[row, start : start + size] = segment
      positions[row, start : start + size] = np.arange(size)
      loss_mask[row, start + size // 2 : start + size - 1] = 1  # Last token has no target in-segment.
  tokens = np.where(segment_ids > 0, tokens, 0)
  targets = np.where(loss_mask > 0, targets, 0)
  return dict(tokens=tokens, targets=targets, loss_mask=loss_mask, segment_ids=segment_ids, positions=positions)


class SeededBatches:
  """Deterministic batch stream with Grain-style get_state/set_state; records what it served."""

  def __init__(self, fail_at: int | None = None, limit: int | None = None):
    self.index = 0
    self.served: list[int] = []
    self.fail_at = fail_at
    self.limit = limit

  def __iter__(self):
    return self

  def __next__(self):
    if self.limit is not None and self.index >= self.limit:
      raise StopIteration
    if self.fail_at is not None and self.index == self.fail_at:
      raise RuntimeError(f"simulated crash before batch {self.index}")
    self.served.append(self.index)
    batch = make_batch(1000 + self.index)
    self.index += 1
    return batch

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = state["index"]
