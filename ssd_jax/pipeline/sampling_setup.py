"""What every sampling stage shares around the sampler: decoding parameters, prompt fitting, sampler set-up."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import ml_collections
from flax import nnx
from jax.sharding import Mesh

from ssd_jax import sharding
from ssd_jax.config import ConfigError
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


def synthesis_prompts_that_fit(
  prompt_ids: Sequence[Sequence[int]], positions: int, config: ml_collections.ConfigDict
) -> list[int]:
  """Indices of the synthesis prompts (`synthesize.problems`) that leave room for `sampling.max_new_tokens`
  within the model's `positions`; synthesis skips the others.

  Raises:
    ConfigError: naming both fields, when no prompt fits.
  """
  max_new_tokens = config.sampling.max_new_tokens
  kept = [i for i, ids in enumerate(prompt_ids) if 1 <= len(ids) <= positions - max_new_tokens]
  if not kept:
    shortest = min((len(ids) for ids in prompt_ids if ids), default=0)
    raise ConfigError(
      _no_room("sampling", max_new_tokens, positions, "shortest prompt of field 'synthesize.problems'", shortest)
    )
  return kept


def unfit_eval_prompt_error(
  prompt_ids: Sequence[Sequence[int]], positions: int, config: ml_collections.ConfigDict
) -> str | None:
  """Why not every evaluation prompt (`eval.problems`, all sampled) leaves room for
  `eval_sampling.max_new_tokens` within the model's `positions`, naming the longest; None when all fit."""
  max_new_tokens = config.eval_sampling.max_new_tokens
  longest = max((len(ids) for ids in prompt_ids), default=0)
  if longest + max_new_tokens <= positions:
    return None
  return _no_room("eval_sampling", max_new_tokens, positions, "longest prompt of field 'eval.problems'", longest)


def _no_room(section: str, max_new_tokens: int, positions: int, prompt: str, length: int) -> str:
  fix = f"lower it to at most {positions - length}" if length < positions else "no value fits it"
  return (
    f"field '{section}.max_new_tokens' = {max_new_tokens} leaves {max(positions - max_new_tokens, 0)} of the model's "
    f"{positions} positions for a prompt, but the {prompt} has {length} tokens: {fix}"
  )


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
