"""The sampling baselines the sampler benchmarks share: top-k first then top-p (XLA, torch), and the
transformers sampling path (its logits warpers, softmax, multinomial)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssd_jax.sampling.params import SamplingParams


def top_k_first_xla(x, rows, key, *, k: int):
  """lax.top_k(k), then top-p over the k survivors and a categorical draw (one shared k).

  Args:
    x: [batch, vocab] logits. rows: `RowParams` ([batch] arrays). key: a PRNG key.
  """
  values, index = jax.lax.top_k(x.astype(jnp.float32), k)
  z = values / rows.temperature[:, None]
  probs = jax.nn.softmax(z, axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs
  z = jnp.where(before < rows.top_p[:, None], z, -jnp.inf)
  choice = jax.random.categorical(key, z, axis=-1)
  return jnp.take_along_axis(index, choice[:, None], axis=-1)[:, 0]


def torch_samplers(params: SamplingParams) -> dict:
  """name -> callable(torch logits [batch, vocab]) -> tokens, on whatever device the logits are."""
  import torch
  from transformers.generation import logits_process as lp

  if params.greedy:  # transformers' greedy path
    return {"argmax (torch)": lambda x: torch.argmax(x, dim=-1)}

  def top_k_first(x):
    values, index = torch.topk(x.float() / params.temperature, params.top_k, dim=-1)
    probs = torch.softmax(values, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs
    probs = torch.where(before < params.top_p, probs, 0.0)
    return index.gather(-1, torch.multinomial(probs, 1))

  warpers = [lp.TemperatureLogitsWarper(params.temperature)]
  if params.top_k > 0:
    warpers.append(lp.TopKLogitsWarper(params.top_k))
  if params.top_p < 1:
    warpers.append(lp.TopPLogitsWarper(params.top_p))

  def warped(x):
    scores = x.float()
    for warper in warpers:
      scores = warper(None, scores)
    return torch.multinomial(torch.softmax(scores, dim=-1), 1)

  samplers = {"transformers warpers (torch)": warped}
  if params.top_k > 0:
    samplers["top-k first (torch)"] = top_k_first
  return samplers
