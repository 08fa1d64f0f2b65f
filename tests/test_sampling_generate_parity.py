"""The sampler against transformers' greedy `generate`, and sharded against unsharded."""

import numpy as np
import pytest
import torch
from sampling_generate_fixtures import PROMPTS, hf_model, load_split

from ssd_jax import sharding
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams

MAX_NEW = 8
GREEDY = SamplingParams(temperature=0.0)
# Per-prompt settings, as when training prompts (T_train) and eval prompts (T_eval) share a run.
MIXED = [
  SamplingParams(1.6, 20, 0.8),
  SamplingParams(1.1, 20, 0.8),
  SamplingParams(0.7, 0, 0.95),
  SamplingParams(1.0, 0, 1.0, 0.05),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  module = hf_model("qwen3", seed=1)
  graphdef, state, _ = load_split(module, tmp_path_factory.mktemp("qwen3_parity"))
  return module, graphdef, state


@pytest.fixture(scope="module")
def single(checkpoint):
  return Sampler(checkpoint[1], max_len=32, batch_size=4)


def _generate(sampler, state, params, **kwargs):
  return sampler.generate(state, PROMPTS, params, n=2, max_new_tokens=MAX_NEW, seed=5, progress=False, **kwargs)


def _hf_greedy(module, prompts, max_new_tokens):
  width = max(map(len, prompts))
  ids = np.zeros((len(prompts), width), np.int64)
  mask = np.zeros_like(ids)
  for i, prompt in enumerate(prompts):  # Left padding, as transformers expects for generation.
    ids[i, width - len(prompt) :] = prompt
    mask[i, width - len(prompt) :] = 1
  with torch.no_grad():
    out = module.generate(
      input_ids=torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      do_sample=False,
      max_new_tokens=max_new_tokens,
      min_new_tokens=max_new_tokens,
      pad_token_id=0,
    )
  return out[:, width:].numpy().tolist()


def test_greedy_matches_transformers_generate_with_mixed_prompt_lengths(checkpoint, single):
  module, _, state = checkpoint
  ours = single.generate(state, PROMPTS, GREEDY, max_new_tokens=MAX_NEW, progress=False)
  assert [g.token_ids.tolist() for g in ours] == _hf_greedy(module, PROMPTS, MAX_NEW)


def test_sharded_sampler_equals_unsharded(checkpoint, single):
  _, graphdef, state = checkpoint
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  sharded_state = sharding.shard_state(state, mesh)
  assert not sharded_state["embed"].get_value().sharding.is_fully_replicated
  sharded = Sampler(graphdef, mesh=mesh, max_len=32, batch_size=4)
  # The same weights re-placed once per call as a tensor-only copy (replicated over data and fsdp).
  tensor_rules = sharding.decode_weight_rules(sharding.DEFAULT_RULES, "tensor")
  tensor_copy = Sampler(graphdef, mesh=mesh, weight_rules=tensor_rules, max_len=32, batch_size=4)
  assert tensor_copy.weight_rules == tensor_rules and sharded.weight_rules is None
  for params in (GREEDY, MIXED):
    expected = _generate(single, state, params, stop_ids=[3, 4])
    for sampler in (sharded, tensor_copy):
      got = _generate(sampler, sharded_state, params, stop_ids=[3, 4])
      assert [g.token_ids.tolist() for g in got] == [g.token_ids.tolist() for g in expected]
      assert [g.finish_reason for g in got] == [g.finish_reason for g in expected]
      for a, b in zip(got, expected):
        np.testing.assert_allclose(a.logprob_raw, b.logprob_raw, atol=1e-4)
        np.testing.assert_allclose(a.logprob_sampled, b.logprob_sampled, atol=1e-4)
  # The caller's weights keep their training layout.
  assert sharded_state["embed"].get_value().sharding.spec == sharding.logical_to_spec(("vocab", "embed"))
  with pytest.raises(ValueError, match="batch_size 2 is not divisible by the 4 shards"):
    Sampler(graphdef, mesh=mesh, max_len=32, batch_size=2)
