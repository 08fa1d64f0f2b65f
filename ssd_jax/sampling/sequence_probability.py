"""Exact probabilities of given token sequences under truncated sampling (no sampling noise).

The distribution a token is drawn from is the sampler's own (`truncation.truncate_logits`: temperature, then
top-k, top-p, min-p), so an exact evaluation and the sampler agree on what a decoding setting does.
"""

from __future__ import annotations

import jax
import numpy as np

from ssd_jax.sampling.params import SamplingParams
from ssd_jax.sampling.truncation import truncate_logits


def truncated_distributions(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
  """float64 [..., vocab]: the distribution the sampler draws from, for each row of `logits`.

  Args:
    logits: float [..., vocab] next-token logits.
    params: the decoding setting (temperature > 0; greedy has no distribution to speak of).
  """
  if params.greedy:
    raise ValueError("temperature must be > 0 for a sampling distribution (0 is greedy)")
  logits = np.asarray(logits, np.float32)
  flat = logits.reshape(-1, logits.shape[-1])
  kept = np.asarray(jax.device_get(truncate_logits(flat, params.rows(flat.shape[0]))), np.float64)
  kept -= kept.max(axis=-1, keepdims=True)
  probs = np.exp(kept)  # exp(-inf) = 0 for the dropped tokens.
  probs /= probs.sum(axis=-1, keepdims=True)
  return probs.reshape(logits.shape)


def sequence_probabilities(logits: np.ndarray, tokens: np.ndarray, params: SamplingParams) -> np.ndarray:
  """float64 [rows]: probability that sampling with `params` draws exactly `tokens` of each row.

  Args:
    logits: float [rows, length, vocab]; `logits[:, t]` is the model's next-token logits given `tokens[:, :t]`.
    tokens: int [rows, length] the sequences.
    params: the decoding setting.
  """
  if logits.ndim != 3 or tokens.shape != logits.shape[:2]:
    raise ValueError(
      f"logits must be [rows, length, vocab] and tokens [rows, length], got {logits.shape}, {tokens.shape}"
    )
  probs = truncated_distributions(logits, params)
  per_token = np.take_along_axis(probs, np.asarray(tokens)[..., None], axis=-1)[..., 0]
  return per_token.prod(axis=-1)
