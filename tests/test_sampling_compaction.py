"""Compacting finished rows out of the decoding batch changes nothing but the cost."""

import numpy as np
import pytest
from sampling_generate_fixtures import PROMPTS, VOCAB, hf_model, load_split

from ssd_jax.sampling import decode_loop
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams

MAX_NEW = 24


@pytest.fixture(scope="module")
def split(tmp_path_factory):
  return load_split(hf_model("qwen3", seed=2), tmp_path_factory.mktemp("qwen3_compaction"))


def test_compaction_sizes():
  assert decode_loop.compaction_sizes(32) == [32, 16, 8]
  assert decode_loop.compaction_sizes(4) == [4]
  assert decode_loop.compaction_sizes(48, shards=16) == [48]  # 24 rows would not divide over 16 shards
  assert decode_loop.compaction_sizes(64, shards=16) == [64, 32, 16]
  assert decode_loop.compaction_sizes(256) == [256, 128, 64]  # at most MAX_COMPACTIONS halvings


def _generate(graphdef, state, params):
  sampler = Sampler(graphdef, max_len=48, batch_size=16)
  # A sixth of the vocabulary stops a row: rows end at spread-out steps, most before the last one.
  stops = list(range(0, VOCAB, 6))
  out = sampler.generate(state, PROMPTS, params, n=4, max_new_tokens=MAX_NEW, stop_ids=stops, seed=3, progress=False)
  return out


@pytest.mark.parametrize(
  "params", [SamplingParams(1.0, 20, 0.95), pytest.param(SamplingParams(temperature=0.0), marks=pytest.mark.slow)]
)
def test_compacted_decoding_equals_full_batch_decoding(split, params, monkeypatch):
  graphdef, state, _ = split
  compacted = _generate(graphdef, state, params)
  lengths = sorted(g.num_tokens for g in compacted)
  if not params.greedy:  # the batch did shrink: most rows ended while others went on
    assert lengths[7] < lengths[-1]
  monkeypatch.setattr(decode_loop, "MIN_COMPACT_ROWS", 10**6)
  full = _generate(graphdef, state, params)
  for a, b in zip(compacted, full):
    assert (a.prompt_index, a.sample_index, a.finish_reason) == (b.prompt_index, b.sample_index, b.finish_reason)
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    np.testing.assert_allclose(a.logprob_raw, b.logprob_raw, atol=1e-5)
    np.testing.assert_allclose(a.logprob_sampled, b.logprob_sampled, atol=1e-5)
