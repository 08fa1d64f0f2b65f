"""The sampler: n completions per prompt from a (sharded) model, in fixed-size jitted batches.

    sampler = Sampler(graphdef, mesh=mesh, max_len=4096, batch_size=64)
    generations = sampler.generate(state, prompts, SamplingParams(1.6, 20, 0.8), n=1,
                                   max_new_tokens=2048, stop_ids=[eos_id], seed=0)

`state` is the training state itself, passed to the compiled program as an argument. Prompts
are sorted by length, padded to length buckets and cut into batches of `batch_size` rows, so
one program is compiled per (prompt-length bucket, max_new_tokens) and reused.

Determinism: the sample of (prompt i, sample j) is drawn with keys derived from
(seed, i, j) only. The same seed, prompts, parameters, batch size and mesh give the same
tokens. A different batch composition or mesh gives the same random draws per row, so tokens
agree up to floating-point differences in the logits (which can flip near-ties).

A completion's token_ids end with the stop token when it stopped (strip it before decoding
text) and never contain padding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import tqdm
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from ssd_jax.sampling.batching import RowBatch, plan_batches, validate_prompts
from ssd_jax.sampling.decode_loop import GenerationOutput, generate_batch, model_config, row_keys
from ssd_jax.sampling.params import RowParams, SamplingParams
from ssd_jax.sharding import DEFAULT_RULES, LogicalRules, axes_size, logical_to_spec, shard_state

__all__ = ["Generation", "GenerationOutput", "Sampler", "generate_batch", "row_keys"]

# Stop-id lists are padded to a multiple of this (with -1) so their length rarely recompiles.
_STOP_IDS_MULTIPLE = 8


@dataclasses.dataclass(frozen=True)
class Generation:
  """One completion.

  Attributes:
    prompt_index: index of its prompt in the list given to `Sampler.generate`.
    sample_index: 0..n-1 among that prompt's samples.
    token_ids: int32 [num_tokens], ending with the stop token when finish_reason is 'stop'.
    finish_reason: 'stop' (a stop token was drawn) or 'length' (max_new_tokens reached).
    logprob_raw: float32 [num_tokens], log-probs under the model at temperature 1, untruncated.
    logprob_sampled: float32 [num_tokens], log-probs under the tempered, truncated
      distribution each token was drawn from (0 for greedy decoding).
  """

  prompt_index: int
  sample_index: int
  token_ids: np.ndarray
  finish_reason: str
  logprob_raw: np.ndarray
  logprob_sampled: np.ndarray

  @property
  def num_tokens(self) -> int:
    return len(self.token_ids)


def _per_prompt_params(params: SamplingParams | Sequence[SamplingParams], num_prompts: int):
  if isinstance(params, SamplingParams):
    return [params] * num_prompts
  params = list(params)
  if len(params) != num_prompts or not all(isinstance(p, SamplingParams) for p in params):
    raise ValueError(f"params must be one SamplingParams or one per prompt ({num_prompts}), got {len(params)} items")
  return params


class Sampler:
  """Batched prefill + decode with per-row sampling parameters and stop tokens.

  Args:
    graphdef: the GraphDef of an `nnx.split` Transformer.
    mesh: the mesh the state is sharded on (None: single device).
    rules: logical-axis rules; the KV cache and activations follow the same rules as training.
    weight_rules: rules to re-place the weights with once per `generate` call (e.g.
      `sharding.decode_weight_rules(rules, 'tensor')`); None decodes from the weights as given.
    max_len: the longest prompt (after bucketing) plus max_new_tokens a batch may need.
    batch_size: rows per compiled batch; with a mesh, a multiple of the batch shards.
    impl: truncated-sampling implementation ('auto', 'xla', 'reference', 'pallas').
    pad_id: padding token id.
    bucket_multiple: prompt widths are powers of two up to this, then multiples of it.
  """

  def __init__(
    self,
    graphdef: nnx.GraphDef,
    *,
    mesh: Mesh | None = None,
    rules: LogicalRules = DEFAULT_RULES,
    weight_rules: LogicalRules | None = None,
    max_len: int,
    batch_size: int,
    impl: str = "auto",
    pad_id: int = 0,
    bucket_multiple: int = 64,
  ):
    if max_len < 2 or batch_size < 1:
      raise ValueError(f"max_len must be >= 2 and batch_size >= 1, got {max_len}, {batch_size}")
    shards = axes_size(mesh, logical_to_spec(("batch",), rules)[0])
    if batch_size % shards:
      raise ValueError(f"batch_size {batch_size} is not divisible by the {shards} shards of the 'batch' axis")
    self.graphdef, self.mesh, self.rules = graphdef, mesh, rules
    self.weight_rules = None if mesh is None or weight_rules == rules else weight_rules
    self.max_len, self.batch_size, self.pad_id = max_len, batch_size, pad_id
    self.bucket_multiple = bucket_multiple
    # One jit per sampler: its cache holds one program per (prompt width, max_new_tokens).
    self._run = jax.jit(
      functools.partial(
        self._run_batch, graphdef, mesh=mesh, rules=rules, weight_rules=self.weight_rules, impl=impl, pad_id=pad_id
      ),
      static_argnames="max_new_tokens",
    )

  @staticmethod
  def _run_batch(
    graphdef,
    state,
    prompts,
    prompt_lengths,
    seed,
    prompt_index,
    sample_index,
    params,
    stop_ids,
    active,
    *,
    max_new_tokens,
    mesh,
    rules,
    weight_rules,
    impl,
    pad_id,
  ):
    keys = row_keys(seed, prompt_index, sample_index)
    return generate_batch(
      graphdef,
      state,
      prompts,
      prompt_lengths,
      keys,
      params,
      stop_ids,
      active,
      max_new_tokens=max_new_tokens,
      mesh=mesh,
      rules=rules,
      weight_rules=weight_rules,
      impl=impl,
      pad_id=pad_id,
    )

  def _put(self, x: np.ndarray, names: tuple[str, ...]) -> jax.Array:
    """A global array from a host array every process holds in full."""
    x = np.asarray(x)
    if self.mesh is None:
      return jax.numpy.asarray(x)
    sharding = NamedSharding(self.mesh, logical_to_spec(names[: x.ndim], self.rules))
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  def _fetch(self, x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  def _device_batch(
    self, batch: RowBatch, params: list[SamplingParams], seed: int, stop_ids: np.ndarray
  ) -> dict[str, Any]:
    # Padding rows draw greedily: their tokens are dropped, and rules outside the candidate lists' (prompt 0's,
    # which they would otherwise take) would move every step of the batch to the whole-vocabulary draw.
    greedy = SamplingParams(temperature=0.0)
    rows = [params[p] if active else greedy for p, active in zip(batch.prompt_index, batch.active)]
    host_rows = RowParams(
      temperature=np.array([r.temperature for r in rows], np.float32),
      top_k=np.array([r.top_k for r in rows], np.int32),
      top_p=np.array([r.top_p for r in rows], np.float32),
      min_p=np.array([r.min_p for r in rows], np.float32),
    )
    row = ("batch",)
    return dict(
      prompts=self._put(batch.prompts, ("batch", "length")),
      prompt_lengths=self._put(batch.prompt_lengths, row),
      seed=self._put(np.uint32(seed), ()),
      prompt_index=self._put(batch.prompt_index, row),
      sample_index=self._put(batch.sample_index, row),
      params=RowParams(*(self._put(x, row) for x in host_rows)),
      stop_ids=self._put(stop_ids, (None,)),
      active=self._put(batch.active, row),
    )

  def generate(
    self,
    state: Any,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams | Sequence[SamplingParams],
    *,
    n: int = 1,
    max_new_tokens: int,
    stop_ids: Sequence[int] = (),
    seed: int = 0,
    progress: bool = True,
  ) -> list[Generation]:
    """Samples n completions of every prompt.

    Args:
      state: the model's nnx.State (sharded on the sampler's mesh, or on one device).
      prompts: token id lists, each non-empty.
      params: one SamplingParams for all prompts, or one per prompt (shared by its n samples).
      n: completions per prompt.
      max_new_tokens: the most tokens per completion.
      stop_ids: token ids that end a completion (kept as its last token).
      seed: integer seed in [0, 2**32).
      progress: show a progress bar over batches (on process 0).

    Returns:
      len(prompts) * n Generations, ordered by (prompt_index, sample_index).
    """
    if not 0 <= seed < 2**32:
      raise ValueError(f"seed must be an integer in [0, 2**32), got {seed}")
    if max_new_tokens < 1 or max_new_tokens >= self.max_len:
      raise ValueError(f"max_new_tokens must be in [1, max_len={self.max_len}), got {max_new_tokens}")
    if not prompts:
      return []
    per_prompt = _per_prompt_params(params, len(prompts))
    max_prompt_len = self.max_len - max_new_tokens
    vocab_size = model_config(self.graphdef, state).vocab_size
    validate_prompts(prompts, vocab_size, max_prompt_len)
    if any(not 0 <= int(i) < vocab_size for i in stop_ids):
      raise ValueError(f"stop_ids must be token ids in [0, {vocab_size}), got {list(stop_ids)}")
    if not 0 <= self.pad_id < vocab_size:  # Its embedding would be NaN, and masked slots still multiply by it.
      raise ValueError(f"pad_id must be a token id in [0, {vocab_size}), got {self.pad_id}")
    stops = np.full((-(-max(len(stop_ids), 1) // _STOP_IDS_MULTIPLE) * _STOP_IDS_MULTIPLE,), -1, np.int32)
    stops[: len(stop_ids)] = np.asarray(stop_ids, np.int32)

    if self.weight_rules is not None:
      state = shard_state(state, self.mesh, self.weight_rules)  # One copy for the whole call, freed after it.
    batches = plan_batches(
      prompts, n, self.batch_size, max_prompt_len, pad_id=self.pad_id, bucket_multiple=self.bucket_multiple
    )
    results: list[Generation] = []
    bar = tqdm.tqdm(total=len(batches), desc="sampling", unit="batch", disable=not progress or jax.process_index() != 0)
    pending = None
    for batch in batches:
      # Dispatch is asynchronous: the next batch is queued before the previous one is read back.
      out = self._run(state, **self._device_batch(batch, per_prompt, seed, stops), max_new_tokens=max_new_tokens)
      if pending is not None:
        results += self._collect(*pending, vocab_size)
        bar.update(1)
      pending = (batch, out)
    results += self._collect(*pending, vocab_size)
    bar.update(1)
    bar.close()
    return sorted(results, key=lambda g: (g.prompt_index, g.sample_index))

  def _collect(self, batch: RowBatch, out: GenerationOutput, vocab_size: int) -> list[Generation]:
    """The active rows of one batch's output, as Generations.

    Raises:
      FloatingPointError: a drawn token is not a vocabulary id or its log-probability is not finite, which
        happens only for logits with NaN, +inf or no finite value (the model diverged or overflowed); nothing
        of the batch is returned.
    """
    out = GenerationOutput(*(self._fetch(x) for x in out))
    generations = []
    for r in np.flatnonzero(batch.active):
      count = int(out.num_tokens[r])
      tokens = out.tokens[r, :count]
      bad = np.flatnonzero((tokens < 0) | (tokens >= vocab_size) | ~np.isfinite(out.logprob_raw[r, :count]))
      if bad.size:
        raise FloatingPointError(
          f"sampling drew token id {int(tokens[bad[0]])} (vocabulary [0, {vocab_size})) with log-probability "
          f"{float(out.logprob_raw[r, bad[0]])} as token {int(bad[0])} of sample {int(batch.sample_index[r])} of "
          f"prompt {int(batch.prompt_index[r])}: the model's logits there held NaN, +inf or no finite value"
        )
      generations.append(
        Generation(
          prompt_index=int(batch.prompt_index[r]),
          sample_index=int(batch.sample_index[r]),
          token_ids=out.tokens[r, :count],
          finish_reason="stop" if out.stopped[r] else "length",
          logprob_raw=out.logprob_raw[r, :count],
          logprob_sampled=out.logprob_sampled[r, :count],
        )
      )
    return generations
