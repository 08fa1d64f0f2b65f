"""What every sampling stage shares around the sampler: decoding parameters, prompt fitting, sampler set-up."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import ml_collections
from flax import nnx
from jax.sharding import Mesh

from ssd_jax import sharding
from ssd_jax.model import ModelConfig
from ssd_jax.sampling.batching import prompt_bucket
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams


def sampling_params(section: ml_collections.ConfigDict) -> SamplingParams:
  """The decoding parameters of a `sampling` / `eval_sampling` / `self_distill.rollout` config section."""
  return SamplingParams(
    temperature=float(section.temperature),
    top_k=int(section.top_k),
    top_p=float(section.top_p),
    min_p=float(section.min_p),
  )


def prompts_that_fit(prompt_ids: Sequence[Sequence[int]], cfg: ModelConfig, max_new_tokens: int) -> list[int]:
  """Indices of the prompts that leave room for `max_new_tokens` within the model's context.

  Raises:
    ValueError: max_new_tokens alone does not fit the model's context, or no prompt fits.
  """
  room = cfg.max_position_embeddings - max_new_tokens
  if room < 1:
    raise ValueError(
      f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's "
      f"{cfg.max_position_embeddings} positions"
    )
  kept = [i for i, ids in enumerate(prompt_ids) if 1 <= len(ids) <= room]
  if not kept:
    raise ValueError(
      f"no prompt fits: all are empty or longer than {room} tokens (the model's "
      f"{cfg.max_position_embeddings} positions minus max_new_tokens {max_new_tokens})"
    )
  return kept


def make_sampler(
  mesh: Mesh,
  rules: sharding.LogicalRules,
  graphdef: nnx.GraphDef,
  cfg: ModelConfig,
  prompt_ids: Sequence[Sequence[int]],
  section: ml_collections.ConfigDict,
  pad_id: int | None,
  decode_weights: str = "train",
) -> Sampler:
  """A sampler on `mesh` sized for the longest of `prompt_ids` plus `section.max_new_tokens`, holding the
  weights in the `decode_weights` layout (`sharding.DECODE_WEIGHT_LAYOUTS`)."""
  longest = max(len(ids) for ids in prompt_ids)
  max_len = min(prompt_bucket(longest) + section.max_new_tokens, cfg.max_position_embeddings)
  weight_rules = sharding.decode_weight_rules(rules, decode_weights)
  return _cached_sampler(
    graphdef, mesh, rules, weight_rules, max_len, section.batch_size, 0 if pad_id is None else pad_id
  )


@functools.lru_cache(maxsize=8)
def _cached_sampler(graphdef, mesh, rules, weight_rules, max_len, batch_size, pad_id) -> Sampler:
  # Models of one shape share a graphdef, so the stages of a run (synthesis, eval of base and SSD)
  # reuse one sampler and its compiled programs instead of compiling each time.
  return Sampler(
    graphdef,
    mesh=mesh,
    rules=rules,
    weight_rules=weight_rules,
    max_len=max_len,
    batch_size=batch_size,
    pad_id=pad_id,
  )
