"""Host-side batching for the sampler: rows per (prompt, sample), length buckets, padding.

Every batch has the same number of rows, and prompt widths are rounded up to a few bucket
sizes, so one compiled decoding program serves many batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def prompt_bucket(length: int, *, multiple: int = 64, minimum: int = 8) -> int:
  """Padded width for a prompt of `length` tokens.

  Powers of two from `minimum` up to `multiple`, then multiples of `multiple`
  (e.g. 5 -> 8, 20 -> 32, 64 -> 64, 65 -> 128, 130 -> 192).
  """
  if length < 1:
    raise ValueError(f"prompt length must be >= 1, got {length}")
  if multiple < 1 or minimum < 1:
    raise ValueError(f"multiple and minimum must be >= 1, got {multiple}, {minimum}")
  if length > multiple:
    return -(-length // multiple) * multiple
  width = minimum
  while width < length:
    width *= 2
  return min(width, multiple)


@dataclasses.dataclass(frozen=True)
class RowBatch:
  """One fixed-size batch of rows, as host arrays.

  Attributes:
    prompts: int32 [batch, width], right-padded with pad_id.
    prompt_lengths: int32 [batch].
    prompt_index: int32 [batch], index into the caller's prompt list.
    sample_index: int32 [batch], 0..n-1 among that prompt's samples.
    active: bool [batch]; False for rows that only fill up the last batch.
  """

  prompts: np.ndarray
  prompt_lengths: np.ndarray
  prompt_index: np.ndarray
  sample_index: np.ndarray
  active: np.ndarray


def validate_prompts(prompts: Sequence[Sequence[int]], vocab_size: int, max_prompt_len: int) -> None:
  """Raises ValueError naming the first prompt that is empty, too long, or out of the vocabulary."""
  for i, prompt in enumerate(prompts):
    if len(prompt) == 0:
      raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
    if len(prompt) > max_prompt_len:
      raise ValueError(
        f"prompt {i} has {len(prompt)} tokens; at most {max_prompt_len} fit (sampler max_len minus max_new_tokens)"
      )
    ids = np.asarray(prompt)
    if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= vocab_size:
      raise ValueError(f"prompt {i} must hold integer token ids in [0, {vocab_size})")


def plan_batches(
  prompts: Sequence[Sequence[int]],
  n: int,
  batch_size: int,
  max_prompt_len: int,
  *,
  pad_id: int = 0,
  bucket_multiple: int = 64,
) -> list[RowBatch]:
  """Splits n samples of every prompt into batches of batch_size rows.

  Rows are ordered by prompt length (longest first) so that a batch holds prompts of similar
  length and pads little; the last batch is filled with inactive one-token rows.

  Args:
    prompts: token id lists.
    n: samples per prompt.
    batch_size: rows per batch.
    max_prompt_len: cap on a batch's padded width.
    pad_id: padding token.
    bucket_multiple: see `prompt_bucket`.

  Returns:
    The batches, covering every (prompt, sample) pair exactly once among the active rows.
  """
  if n < 1 or batch_size < 1:
    raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
  order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
  rows = [(p, s) for p in order for s in range(n)]
  batches = []
  for start in range(0, len(rows), batch_size):
    chunk = rows[start : start + batch_size]
    longest = max(len(prompts[p]) for p, _ in chunk)
    width = min(prompt_bucket(longest, multiple=bucket_multiple), max_prompt_len)
    tokens = np.full((batch_size, width), pad_id, np.int32)
    lengths = np.ones((batch_size,), np.int32)
    prompt_index = np.zeros((batch_size,), np.int32)
    sample_index = np.zeros((batch_size,), np.int32)
    active = np.zeros((batch_size,), bool)
    for r, (p, s) in enumerate(chunk):
      tokens[r, : len(prompts[p])] = prompts[p]
      lengths[r], prompt_index[r], sample_index[r], active[r] = len(prompts[p]), p, s, True
    batches.append(RowBatch(tokens, lengths, prompt_index, sample_index, active))
  return batches
