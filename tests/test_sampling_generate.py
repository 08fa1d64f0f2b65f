"""The sampler against uncached full forwards, the reference truncation, and its own contracts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampling_generate_fixtures import PROMPTS, full_forward_logits, greedy_by_full_forwards, hf_model, load_split

from ssd_jax.sampling import decode_loop
from ssd_jax.sampling.batching import plan_batches, prompt_bucket
from ssd_jax.sampling.generate import Sampler, generate_batch, row_keys
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.sampling.truncation import truncate_logits

GREEDY = SamplingParams(temperature=0.0)
SAMPLED = SamplingParams(temperature=1.3, top_k=40, top_p=0.9)
MAX_NEW = 6


@pytest.fixture(scope="module")
def split(tmp_path_factory):
  return load_split(hf_model("qwen3"), tmp_path_factory.mktemp("qwen3"))


@pytest.fixture(scope="module")
def sampler(split):
  return Sampler(split[0], max_len=64, batch_size=4)


def _generate(sampler, state, prompts=PROMPTS, params=SAMPLED, **kwargs):
  kwargs = {"max_new_tokens": MAX_NEW, "seed": 0, "progress": False, **kwargs}
  return sampler.generate(state, prompts, params, **kwargs)


def _ids(generations):
  return [g.token_ids.tolist() for g in generations]


def test_greedy_with_cache_equals_greedy_by_full_forwards(split, sampler):
  graphdef, state, _ = split
  out = _generate(sampler, state, params=GREEDY)
  for prompt, gen in zip(PROMPTS, out):
    assert gen.token_ids.tolist() == greedy_by_full_forwards(graphdef, state, prompt, MAX_NEW)
    assert gen.finish_reason == "length" and gen.num_tokens == MAX_NEW
    np.testing.assert_array_equal(gen.logprob_sampled, 0.0)


def test_logprobs_match_full_forward_and_reference_truncation(split, sampler):
  graphdef, state, _ = split
  out = _generate(sampler, state, n=2)
  for gen in out:
    prompt = PROMPTS[gen.prompt_index]
    logits = full_forward_logits(graphdef, state, prompt + gen.token_ids.tolist())[len(prompt) - 1 : -1]
    steps = np.arange(gen.num_tokens)
    raw = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
    np.testing.assert_allclose(gen.logprob_raw, np.asarray(raw)[steps, gen.token_ids], atol=2e-4)
    truncated = truncate_logits(jnp.asarray(logits), SAMPLED.rows(gen.num_tokens))
    sampled = np.asarray(jax.nn.log_softmax(truncated, axis=-1))[steps, gen.token_ids]
    assert np.isfinite(sampled).all()  # Every drawn token survived truncation.
    np.testing.assert_allclose(gen.logprob_sampled, sampled, atol=2e-4)


def test_seeded_determinism_and_independence_from_batch_composition(split, sampler):
  state = split[1]
  first = _generate(sampler, state, n=2, seed=3)
  assert _ids(first) == _ids(_generate(sampler, state, n=2, seed=3))
  assert _ids(first) != _ids(_generate(sampler, state, n=2, seed=4))
  # An extra prompt reshuffles the batches, but (seed, prompt, sample) fix each row's draws.
  more = _generate(sampler, state, prompts=PROMPTS + [[8, 8, 8]], n=2, seed=3)
  assert _ids(more)[: len(first)] == _ids(first)


def test_n_samples_per_prompt_and_per_prompt_params(split, sampler):
  state = split[1]
  params = [GREEDY, SAMPLED, GREEDY, SAMPLED]
  out = _generate(sampler, state, params=params, n=3)
  assert [(g.prompt_index, g.sample_index) for g in out] == [(p, s) for p in range(4) for s in range(3)]
  greedy = _generate(sampler, state, params=GREEDY)
  for p in range(4):
    samples = [g.token_ids.tolist() for g in out if g.prompt_index == p]
    if params[p] is GREEDY:
      assert samples == [greedy[p].token_ids.tolist()] * 3
    else:
      assert len({tuple(s) for s in samples}) > 1
      assert all((g.logprob_sampled < 0).all() for g in out if g.prompt_index == p)


def test_stop_tokens_and_finish_reasons(split, sampler):
  state = split[1]
  greedy = _generate(sampler, state, params=GREEDY)
  stop = int(greedy[0].token_ids[2])  # Row 0 stops at its third token (or earlier on a repeat).
  out = _generate(sampler, state, params=GREEDY, stop_ids=[stop])
  for full, gen in zip(greedy, out):
    ids = full.token_ids.tolist()
    if stop in ids:
      end = ids.index(stop) + 1
      assert gen.finish_reason == "stop" and gen.token_ids.tolist() == ids[:end]
      assert gen.logprob_raw.shape == (end,)
    else:
      assert gen.finish_reason == "length" and gen.token_ids.tolist() == ids
  assert out[0].finish_reason == "stop" and out[0].num_tokens <= 3


def test_loop_exits_early_when_every_row_has_stopped(split):
  graphdef, state, _ = split
  batch = plan_batches(PROMPTS, 1, 4, 32)[0]
  run = jax.jit(generate_batch, static_argnums=0, static_argnames="max_new_tokens")
  keys = row_keys(0, batch.prompt_index, batch.sample_index)
  args = (graphdef, state, jnp.asarray(batch.prompts), jnp.asarray(batch.prompt_lengths), keys, SAMPLED.rows(4))
  everything = jnp.arange(512, dtype=jnp.int32)
  out = run(*args, everything, jnp.ones((4,), bool), max_new_tokens=MAX_NEW)
  assert int(out.steps) == 1
  np.testing.assert_array_equal(out.num_tokens, 1)
  assert np.asarray(out.stopped).all()
  np.testing.assert_array_equal(np.asarray(out.tokens)[:, 1:], 0)
  no_stops = jnp.full((512,), -1, jnp.int32)  # Same shapes: the same program.
  out = run(*args, no_stops, jnp.asarray([True, False, True, False]), max_new_tokens=MAX_NEW)
  assert int(out.steps) == MAX_NEW
  np.testing.assert_array_equal(out.num_tokens, [MAX_NEW, 0, MAX_NEW, 0])
  np.testing.assert_array_equal(np.asarray(out.tokens)[1::2], 0)
  assert not np.asarray(out.stopped).any()


def test_decode_loop_compiles_once_across_batches_of_a_bucket(split, monkeypatch):
  graphdef, state, _ = split
  traces = []
  original = decode_loop.decode_step

  def counting_decode_step(*args, **kwargs):
    traces.append(1)
    return original(*args, **kwargs)

  monkeypatch.setattr(decode_loop, "decode_step", counting_decode_step)
  sampler = Sampler(graphdef, max_len=64, batch_size=2)
  prompts = [[i + 1] * (1 + i % 5) for i in range(6)]  # Three batches, all in the 8 bucket.
  out = _generate(sampler, state, prompts=prompts, progress=True)
  assert len(out) == 6 and len(traces) == 1
  _generate(sampler, state, prompts=prompts[::-1], params=GREEDY, seed=9, stop_ids=[1, 2, 3])
  assert len(traces) == 1


def test_prompt_buckets():
  assert [prompt_bucket(n) for n in (1, 5, 8, 9, 33, 64, 65, 130)] == [8, 8, 8, 16, 64, 64, 128, 192]
  assert prompt_bucket(40, multiple=48) == 48
  batches = plan_batches([[1] * 3, [2] * 70, [3]], 2, 4, 100)
  assert [b.prompts.shape for b in batches] == [(4, 100), (4, 8)]  # Capped at 100.
  assert [b.active.tolist() for b in batches] == [[True] * 4, [True, True, False, False]]
  assert batches[0].prompt_index.tolist() == [1, 1, 0, 0]  # Longest prompts first.


def test_bad_inputs_are_named(split, sampler):
  state = split[1]
  assert _generate(sampler, state, prompts=[]) == []
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    _generate(sampler, state, prompts=[[1], []])
  with pytest.raises(ValueError, match="prompt 0 has 60 tokens"):
    _generate(sampler, state, prompts=[[1] * 60])
  with pytest.raises(ValueError, match=r"token ids in \[0, 512\)"):
    _generate(sampler, state, prompts=[[512]])
  with pytest.raises(ValueError, match="one per prompt"):
    _generate(sampler, state, params=[GREEDY])
  with pytest.raises(ValueError, match="stop_ids must be token ids"):
    _generate(sampler, state, stop_ids=[-1])
  with pytest.raises(ValueError, match=r"pad_id must be a token id in \[0, 512\), got 512"):  # NaN rows otherwise
    _generate(Sampler(split[0], max_len=64, batch_size=4, pad_id=512), state)
  with pytest.raises(ValueError, match="max_new_tokens"):
    _generate(sampler, state, max_new_tokens=64)


@pytest.mark.parametrize("scale", ["nan", "inf"])
def test_a_model_with_nan_or_inf_logits_is_an_error_not_a_sample(split, sampler, scale):
  # NaN logits make the sampler return an id outside the vocabulary; +inf ones drew token 0 with a NaN
  # log-probability. Either would be recorded as a sample.
  def broken(path, x):
    if "final_norm" not in jax.tree_util.keystr(path):
      return x
    return x * np.nan if scale == "nan" else x.at[0].set(np.inf).at[1:].set(0.0)

  state = jax.tree_util.tree_map_with_path(broken, split[1])
  for params in (SAMPLED, GREEDY):
    with pytest.raises(FloatingPointError, match=r"with log-probability nan as token 0 of sample 0"):
      _generate(sampler, state, params=params)


def test_padding_rows_draw_greedily(sampler):
  # Prompt 0's top-k 300 is outside the candidate lists: padding rows that took it moved every step of the last
  # batch to the whole-vocabulary draw (tokens unchanged, cost not).
  params = [SamplingParams(temperature=1.0, top_k=300), SAMPLED, SAMPLED]
  (batch,) = [b for b in plan_batches(PROMPTS[:3], 1, 4, 32) if not b.active.all()]
  placed = sampler._device_batch(batch, params, 0, np.zeros(0, np.int32))["params"]
  temperature, top_k = np.asarray(placed.temperature), np.asarray(placed.top_k)
  active = batch.active
  np.testing.assert_array_equal(temperature[~active], 0.0)
  np.testing.assert_array_equal(top_k[active], [params[p].top_k for p in batch.prompt_index[active]])
