"""Prefill through the splash kernel (TPU's path; interpreted here) equals prefill through the cache."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sampling_generate_fixtures import PROMPTS, greedy_by_full_forwards, hf_model

from ssd_jax.model import cache_layout, hf
from ssd_jax.model.kv_cache import KVCache
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  directory = tmp_path_factory.mktemp("qwen3")
  hf_model("qwen3").save_pretrained(directory)
  return str(directory)


def _split(checkpoint, attention):
  model, _ = hf.load_hf(checkpoint, dtype="float32", param_dtype="float32", attention=attention)
  return nnx.split(model)


def _prefill_hidden(graphdef, state, prefill):
  """Hidden states and cache after writing right-padded PROMPTS into an empty cache."""
  width = max(map(len, PROMPTS))
  tokens = np.zeros((len(PROMPTS), width), np.int32)
  for row, prompt in enumerate(PROMPTS):
    tokens[row, : len(prompt)] = prompt
  segment_ids = (tokens != 0).astype(np.int32)
  positions = jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32), tokens.shape)
  model = nnx.merge(graphdef, state)
  cache = KVCache.init(model.cfg, len(PROMPTS), 32)
  return model.hidden(
    jnp.asarray(tokens), positions, segment_ids=jnp.asarray(segment_ids), cache=cache, prefill=prefill
  )


def test_splash_prefill_equals_cache_prefill_on_every_real_token(checkpoint):
  graphdef, state = _split(checkpoint, "splash")
  splash_hidden, splash_cache = _prefill_hidden(graphdef, state, prefill=True)
  cache_hidden, cache_cache = _prefill_hidden(graphdef, state, prefill=False)
  for row, prompt in enumerate(PROMPTS):  # Padding positions carry no meaning on either path.
    np.testing.assert_allclose(splash_hidden[row, : len(prompt)], cache_hidden[row, : len(prompt)], atol=2e-5)
  np.testing.assert_array_equal(splash_cache.valid, cache_cache.valid)
  valid = np.asarray(cache_cache.valid)[None, :, :, None, None]  # Keys of padding slots are never read.
  for to_slots, got, want in (
    (cache_layout.k_slots, splash_cache.k, cache_cache.k),
    (cache_layout.v_slots, splash_cache.v, cache_cache.v),
  ):
    got, want = to_slots(got), to_slots(want)  # [layers, batch, slots, kv_heads, head_dim]
    np.testing.assert_allclose(np.where(valid, got, 0), np.where(valid, want, 0), atol=2e-5)
  assert int(splash_cache.index) == int(cache_cache.index) == max(map(len, PROMPTS))


def test_greedy_generation_with_splash_prefill_equals_full_forwards(checkpoint):
  graphdef, state = _split(checkpoint, "splash")
  sampler = Sampler(graphdef, max_len=64, batch_size=4)
  out = sampler.generate(state, PROMPTS, SamplingParams(temperature=0.0), max_new_tokens=5, seed=0, progress=False)
  xla_graphdef, xla_state = _split(checkpoint, "xla")
  for g in out:
    assert g.token_ids.tolist() == greedy_by_full_forwards(xla_graphdef, xla_state, PROMPTS[g.prompt_index], 5)
