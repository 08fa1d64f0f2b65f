"""Compacting finished rows out of the decoding batch changes nothing but the cost."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampling_generate_fixtures import PROMPTS, VOCAB, hf_model, load_split

from ssd_jax import sharding
from ssd_jax.model.config import ModelConfig
from ssd_jax.model.kv_cache import KVCache
from ssd_jax.sampling import compaction
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams

MAX_NEW = 24


@pytest.fixture(scope="module")
def split(tmp_path_factory):
  return load_split(hf_model("qwen3", seed=2), tmp_path_factory.mktemp("qwen3_compaction"))


def test_compaction_sizes():
  assert compaction.compaction_sizes(32) == [32, 16, 8]
  assert compaction.compaction_sizes(4) == [4]
  assert compaction.compaction_sizes(48, shards=16) == [48]  # 24 rows would not divide over 16 shards
  assert compaction.compaction_sizes(64, shards=16) == [64, 32, 16]
  assert compaction.compaction_sizes(256) == [256, 128, 64]  # at most MAX_COMPACTIONS halvings


def _generate(graphdef, state, params, mesh=None):
  sampler = Sampler(graphdef, mesh=mesh, max_len=48, batch_size=16)
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
  monkeypatch.setattr(compaction, "MIN_COMPACT_ROWS", 10**6)
  full = _generate(graphdef, state, params)
  for a, b in zip(compacted, full):
    assert (a.prompt_index, a.sample_index, a.finish_reason) == (b.prompt_index, b.sample_index, b.finish_reason)
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    np.testing.assert_allclose(a.logprob_raw, b.logprob_raw, atol=1e-5)
    np.testing.assert_allclose(a.logprob_sampled, b.logprob_sampled, atol=1e-5)


def test_sharded_compaction_equals_unsharded(split):
  graphdef, state, _ = split
  params = SamplingParams(1.0, 20, 0.95)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})  # The batch over 4 shards: sizes 16 -> 8.
  assert compaction.compaction_sizes(16, shards=4) == [16, 8]
  expected = _generate(graphdef, state, params)
  got = _generate(graphdef, sharding.shard_state(state, mesh), params, mesh=mesh)
  assert [g.token_ids.tolist() for g in got] == [g.token_ids.tolist() for g in expected]
  assert [g.finish_reason for g in got] == [g.finish_reason for g in expected]


def _sharded_cache(mesh, batch=16, slots=64):
  cfg = ModelConfig(
    vocab_size=32, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=2, head_dim=8
  )
  rng = np.random.default_rng(0)
  cache = KVCache.init(cfg, batch, slots, dtype=jnp.float32)
  cache = cache.replace(
    k=jnp.asarray(rng.normal(size=cache.k.shape), jnp.float32),
    v=jnp.asarray(rng.normal(size=cache.v.shape), jnp.float32),
    valid=jnp.asarray(rng.random(cache.valid.shape) < 0.5),
  )
  return jax.device_put(cache, KVCache.shardings(mesh))


def test_each_shard_keeps_its_own_live_rows_without_collectives():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  axes = ("data", "fsdp")
  cache = _sharded_cache(mesh)
  logits = jnp.arange(16 * 5, dtype=jnp.float32).reshape(16, 5)
  rows = jnp.arange(16, dtype=jnp.int32)
  # Shard s holds rows 4s..4s+3; its live rows are the ones not done.
  done = jnp.asarray([0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1], bool)
  with sharding.use_rules(mesh, sharding.DEFAULT_RULES):
    fn = jax.jit(
      lambda c, l, r, d: compaction.compact(c, l, r, d, 8, mesh=mesh, rules=sharding.DEFAULT_RULES, batch_axes=axes)
    )
    compiled = fn.lower(cache, logits, rows, done).compile()
    out_cache, out_logits, out_rows = fn(cache, logits, rows, done)
  # Per shard of 4 rows: live rows first, in order, then finished ones, 2 kept.
  assert out_rows.tolist() == [0, 2, 6, 4, 8, 9, 13, 12]
  np.testing.assert_array_equal(out_cache.k, np.asarray(cache.k)[:, :, out_rows])
  np.testing.assert_array_equal(out_cache.valid, np.asarray(cache.valid)[out_rows])
  np.testing.assert_array_equal(out_logits, np.asarray(logits)[out_rows])
  assert out_cache.k.sharding.spec == cache.k.sharding.spec
  text = compiled.as_text()
  # A gather across the batch split would assemble the whole cache on every device.
  assert not any(op in text for op in ("all-gather", "all-to-all", "collective-permute", "all-reduce")), text[:2000]
  assert int(compaction.most_live_per_shard(done, 4)) == 2
