"""The sampling baselines the sampler benchmarks share: top-k first then top-p (XLA, torch), and the
transformers sampling path (its logits warpers, softmax, multinomial)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.sampling.params import SamplingParams


def _top_k_first_xla_truncated(x, rows, k: int):
  """(index, z) [batch, k]: the k largest tokens and their tempered logits, -inf past top-p."""
  values, index = jax.lax.top_k(x.astype(jnp.float32), k)
  z = values / rows.temperature[:, None]
  probs = jax.nn.softmax(z, axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs
  return index, jnp.where(before < rows.top_p[:, None], z, -jnp.inf)


def top_k_first_xla(x, rows, key, *, k: int):
  """lax.top_k(k), then top-p over the k survivors and a categorical draw (one shared k).

  Args:
    x: [batch, vocab] logits. rows: `RowParams` ([batch] arrays). key: a PRNG key.
  """
  index, z = _top_k_first_xla_truncated(x, rows, k)
  choice = jax.random.categorical(key, z, axis=-1)
  return jnp.take_along_axis(index, choice[:, None], axis=-1)[:, 0]


def top_k_first_xla_kept(x, rows, *, k: int):
  """bool [batch, vocab]: the tokens `top_k_first_xla` can draw."""
  index, z = _top_k_first_xla_truncated(x, rows, k)
  return jnp.zeros(x.shape, bool).at[jnp.arange(x.shape[0])[:, None], index].set(jnp.isfinite(z))


def top_k_first_torch(x, params: SamplingParams):
  """(index, probs) [batch, k]: the k largest tokens and their float32 probabilities at the temperature, 0 past top-p.

  `torch.topk` runs on the raw logits, in their dtype: a positive temperature keeps their order, so only
  the k survivors are upcast and divided. Sampling parameters only (greedy is an argmax, never this).

  Args:
    x: torch logits [batch, vocab]. params: top_k > 0, temperature > 0.
  """
  import torch

  values, index = torch.topk(x, params.top_k, dim=-1)
  probs = torch.softmax(values.float() / params.temperature, dim=-1)
  before = torch.cumsum(probs, dim=-1) - probs
  return index, torch.where(before < params.top_p, probs, 0.0)


def top_k_first_generate_kwargs(params: SamplingParams) -> dict:
  """transformers `generate` keyword arguments that sample with `top_k_first_torch` in place of its own warpers.

  T 1, top-k 0 and top-p 1 keep generate's temperature, top-k and top-p warpers out (its TopP warper
  sorts the whole vocabulary every step); the processor returns the kept tokens' log-probabilities
  (-inf elsewhere), so generate's softmax and multinomial draw from the same distribution.
  """
  import torch
  from transformers import LogitsProcessor, LogitsProcessorList

  class TopKFirst(LogitsProcessor):
    def __call__(self, input_ids, scores):
      index, probs = top_k_first_torch(scores, params)
      return torch.full_like(scores, -torch.inf).scatter(-1, index, probs.log().to(scores.dtype))

  return dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, logits_processor=LogitsProcessorList([TopKFirst()]))


def _torch_truncations(params: SamplingParams) -> dict:
  """name -> callable(torch logits) -> (index or None, weights): what each torch sampler draws from.

  transformers' warpers give scores [batch, vocab], -inf where dropped (index None); top-k first gives
  the k largest tokens' indices and their probabilities, 0 past top-p.
  """
  from transformers.generation import logits_process as lp

  warpers = [lp.TemperatureLogitsWarper(params.temperature)]
  if params.top_k > 0:
    warpers.append(lp.TopKLogitsWarper(params.top_k))
  if params.top_p < 1:
    warpers.append(lp.TopPLogitsWarper(params.top_p))

  def warped(x):
    scores = x.float()
    for warper in warpers:
      scores = warper(None, scores)
    return None, scores

  truncations = {"transformers warpers (torch)": warped}
  if params.top_k > 0:
    truncations["top-k first (torch)"] = lambda x: top_k_first_torch(x, params)
  return truncations


def torch_samplers(params: SamplingParams) -> dict:
  """name -> callable(torch logits [batch, vocab]) -> tokens, on whatever device the logits are."""
  import torch

  if params.greedy:  # transformers' greedy path
    return {"argmax (torch)": lambda x: torch.argmax(x, dim=-1)}

  def draw(truncate):
    def sample(x):
      index, weights = truncate(x)
      if index is None:
        return torch.multinomial(torch.softmax(weights, dim=-1), 1)
      return index.gather(-1, torch.multinomial(weights, 1))

    return sample

  return {name: draw(truncate) for name, truncate in _torch_truncations(params).items()}


def torch_kept(params: SamplingParams) -> dict:
  """name -> callable(torch logits [batch, vocab]) -> bool [batch, vocab], the tokens each sampler can draw.

  Empty for greedy parameters (argmax keeps one token, not ties).
  """
  import torch

  def kept(truncate):
    def support(x):
      index, weights = truncate(x)
      if index is None:
        return torch.isfinite(weights)
      return torch.zeros(x.shape, dtype=torch.bool, device=x.device).scatter(-1, index, weights > 0)

    return support

  return {} if params.greedy else {name: kept(truncate) for name, truncate in _torch_truncations(params).items()}


def transformers_generate_kwargs(params: SamplingParams) -> dict:
  """name -> transformers `generate` keyword arguments of each way it draws with `params`, headline first.

  Sampling: top-k first (`top_k_first_generate_kwargs`, the strongest, when top-k is on), then generate's
  own warpers (TopK then TopP, whose sort of the whole vocabulary dominates a small model's step). Greedy:
  its argmax path.
  """
  if params.greedy:
    return {"transformers generate (greedy)": dict(do_sample=False)}
  sides = {}
  if params.top_k > 0:
    sides["transformers generate, top-k first processor"] = top_k_first_generate_kwargs(params)
  sides["transformers generate, its warpers"] = dict(
    do_sample=True, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p
  )
  return sides
