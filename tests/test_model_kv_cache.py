"""Decoding through the KV cache equals full forwards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax.model import KVCache, Transformer, presets


def _model(preset):
  cfg = presets.get(preset, dtype="float32", param_dtype="float32")
  return Transformer(cfg, rngs=nnx.Rngs(0))


def _forward(graphdef, state, tokens, positions, segment_ids, cache):
  return nnx.merge(graphdef, state)(tokens, positions, segment_ids=segment_ids, cache=cache)


_jit_forward = jax.jit(_forward, static_argnums=0)


def test_token_by_token_decode_matches_full_forward():
  model = _model("tiny_qwen3")
  graphdef, state = nnx.split(model)
  length = 9
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 512, (2, length)), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (2, length))
  full, _ = _jit_forward(graphdef, state, tokens, positions, None, None)
  cache = KVCache.init(model.cfg, 2, 16)
  steps = []
  for t in range(length):
    logits, cache = _jit_forward(graphdef, state, tokens[:, t : t + 1], positions[:, t : t + 1], None, cache)
    steps.append(logits)
  assert int(cache.index) == length
  np.testing.assert_allclose(np.concatenate(steps, axis=1), np.asarray(full), atol=2e-5, rtol=0)


def test_prefill_right_padded_then_decode_matches_per_row_forward():
  model = _model("tiny_llama3")
  graphdef, state = nnx.split(model)
  rng = np.random.default_rng(1)
  prompt_lengths = [6, 3, 1]
  width, new_tokens = max(prompt_lengths), 4
  batch = len(prompt_lengths)
  prompts = rng.integers(0, 512, (batch, width)).astype(np.int32)
  segment = (np.arange(width)[None] < np.array(prompt_lengths)[:, None]).astype(np.int32)
  prompts = prompts * segment
  positions = np.broadcast_to(np.arange(width), (batch, width)).astype(np.int32)
  cache = KVCache.init(model.cfg, batch, width + new_tokens)
  logits, cache = _jit_forward(
    graphdef, state, jnp.asarray(prompts), jnp.asarray(positions), jnp.asarray(segment), cache
  )
  assert np.isfinite(np.asarray(logits)).all()  # Padding rows must not produce NaNs.
  next_logits = [np.asarray(logits)[b, n - 1] for b, n in enumerate(prompt_lengths)]
  generated = rng.integers(0, 512, (batch, new_tokens)).astype(np.int32)
  decoded = []
  for t in range(new_tokens):
    pos = np.array(prompt_lengths, np.int32)[:, None] + t
    step, cache = _jit_forward(graphdef, state, jnp.asarray(generated[:, t : t + 1]), jnp.asarray(pos), None, cache)
    decoded.append(np.asarray(step)[:, 0])
  # Reference: each row's prompt + generated tokens in one causal forward; trailing filler cannot
  # influence earlier positions.
  full = np.zeros((batch, width + new_tokens), np.int32)
  for b, n in enumerate(prompt_lengths):
    full[b, : n + new_tokens] = np.concatenate([prompts[b, :n], generated[b]])
  full_positions = np.broadcast_to(np.arange(width + new_tokens), full.shape).astype(np.int32)
  ref, _ = _jit_forward(graphdef, state, jnp.asarray(full), jnp.asarray(full_positions), None, None)
  ref = np.asarray(ref)
  for b, n in enumerate(prompt_lengths):
    np.testing.assert_allclose(next_logits[b], ref[b, n - 1], atol=2e-5, rtol=0)
    for t in range(new_tokens - 1):  # Logits after generated token t predict token t + 1.
      np.testing.assert_allclose(decoded[t][b], ref[b, n + t], atol=2e-5, rtol=0)


def test_packed_segments_do_not_attend_across():
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  model = Transformer(cfg, rngs=nnx.Rngs(2))
  a = jnp.asarray([[5, 6, 7]], jnp.int32)
  b = jnp.asarray([[8, 9]], jnp.int32)
  packed = jnp.concatenate([a, b], axis=1)
  positions = jnp.asarray([[0, 1, 2, 0, 1]], jnp.int32)
  segments = jnp.asarray([[1, 1, 1, 2, 2]], jnp.int32)
  graphdef, state = nnx.split(model)
  logits, _ = _jit_forward(graphdef, state, packed, positions, segments, None)
  ref_b, _ = _jit_forward(graphdef, state, b, jnp.asarray([[0, 1]], jnp.int32), None, None)
  np.testing.assert_allclose(np.asarray(logits)[0, 3:], np.asarray(ref_b)[0], atol=1e-5, rtol=0)


def test_packed_segment_ids_with_a_cache_are_refused():
  model = _model("tiny_qwen3")
  tokens = jnp.asarray([[5, 6, 7, 8, 9]], jnp.int32)
  positions = jnp.asarray([[0, 1, 2, 0, 1]], jnp.int32)
  cache = KVCache.init(model.cfg, 1, 8)
  with pytest.raises(ValueError, match="packed rows need cache=None"):
    model(tokens, positions, segment_ids=jnp.asarray([[1, 1, 1, 2, 2]], jnp.int32), cache=cache)
  logits, _ = model(tokens, positions, segment_ids=jnp.asarray([[1, 1, 1, 1, 0]], jnp.int32), cache=cache)
  assert logits.shape == (1, 5, model.cfg.vocab_size)


def test_caches_from_one_block_up_hold_whole_blocks():
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  cache = KVCache.init(cfg, 2, 300)  # Not a multiple of 128: rounded up, not read in blocks of 4.
  assert cache.max_len == 384 and cache.k.shape[-1] == 128 and cache.valid.shape == (2, 384)
  assert not np.asarray(cache.valid).any()
  small = KVCache.init(cfg, 2, 24)  # Below one block: as asked, in blocks of 8.
  assert small.max_len == 24 and small.k.shape[-1] == 8
