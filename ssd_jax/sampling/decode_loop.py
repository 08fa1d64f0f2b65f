"""The generation loop as one pure, jittable function: prefill a right-padded batch, then decode.

`generate_batch` takes the model as (graphdef, state), so the training state is passed in as a
jit argument and no copy of the weights is made. Prompts are right-padded to a common width W;
the KV cache has W + max_new_tokens slots, rounded up to whole 128-slot blocks. Prompt token i of
every row sits in slot i (padding slots are marked invalid), and generated token t of every row
sits in slot W + t, at RoPE position prompt_length + t, so each row sees exactly its own prompt and
its own completion.

Randomness: row b draws step t with the key fold_in(keys[b], t). A row's tokens therefore
depend only on its own key and its own logits, not on which other rows share the batch.

Cost: attention reads only the filled cache slots (`ssd_jax.model.cache_attention`; on TPU the ragged
decode kernel, which also skips finished rows), and as rows finish, the live rows are compacted into
half-size batches (`compaction`, each device keeping its own rows), so a batch with a few long
completions does not pay full-batch steps until its last row ends.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from ssd_jax.model.kv_cache import KVCache, cache_slots
from ssd_jax.sampling.compaction import compact, compaction_sizes, most_live_per_shard
from ssd_jax.sampling.dispatch import sample_tokens
from ssd_jax.sampling.params import RowParams
from ssd_jax.sharding import DEFAULT_RULES, LogicalRules, as_axes, axes_size, logical_to_spec, use_rules


class GenerationOutput(NamedTuple):
  """Completions of one batch, as fixed-shape arrays.

  Attributes:
    tokens: int32 [batch, max_new_tokens]; a row's first num_tokens entries are its completion
      (ending with the stop token when stopped), the rest are pad_id.
    logprob_raw: float32 [batch, max_new_tokens], log-prob of each token under the model at
      temperature 1 without truncation; 0 past num_tokens.
    logprob_sampled: float32 [batch, max_new_tokens], log-prob under the tempered, truncated
      distribution each token was drawn from (0 for greedy rows); 0 past num_tokens.
    num_tokens: int32 [batch], generated tokens per row (0 for inactive rows).
    stopped: bool [batch], True when the row ended on a stop token (finish reason 'stop'),
      False when it ran to max_new_tokens ('length').
    steps: int32 scalar, decoding steps run; fewer than max_new_tokens when every row finished
      early.
  """

  tokens: jax.Array
  logprob_raw: jax.Array
  logprob_sampled: jax.Array
  num_tokens: jax.Array
  stopped: jax.Array
  steps: jax.Array


class _Progress(NamedTuple):
  """Loop-carried per-row results (see GenerationOutput) and whether each row is finished."""

  tokens: jax.Array
  logprob_raw: jax.Array
  logprob_sampled: jax.Array
  num_tokens: jax.Array
  stopped: jax.Array
  done: jax.Array


def row_keys(seed: int | jax.Array, prompt_index: jax.Array, sample_index: jax.Array) -> jax.Array:
  """Per-row PRNG keys from (seed, prompt index, sample index).

  Args:
    seed: integer seed (a Python int or an integer scalar array).
    prompt_index: int32 [batch], the prompt each row continues.
    sample_index: int32 [batch], which of that prompt's samples the row is.

  Returns:
    typed PRNG keys [batch]; equal (seed, prompt, sample) triples give equal keys.
  """
  base = jax.random.key(seed)
  fold = lambda p, s: jax.random.fold_in(jax.random.fold_in(base, p), s)
  return jax.vmap(fold)(jnp.asarray(prompt_index, jnp.int32), jnp.asarray(sample_index, jnp.int32))


def model_config(graphdef: nnx.GraphDef, state: Any):
  """The ModelConfig of a split Transformer (merging copies no arrays)."""
  return nnx.merge(graphdef, state).cfg


def decode_step(
  graphdef: nnx.GraphDef, state: Any, tokens: jax.Array, positions: jax.Array, live: jax.Array, cache: KVCache
) -> tuple[jax.Array, KVCache]:
  """One token per row through the cache.

  Args:
    graphdef, state: the split Transformer.
    tokens: int32 [batch], the previous token of each row.
    positions: int32 [batch], its RoPE position.
    live: bool [batch]; finished rows write an invalid cache slot.
    cache: the KV cache, advanced by one slot.

  Returns:
    (float32 logits [batch, vocab] for the next token, the advanced cache).
  """
  model = nnx.merge(graphdef, state)
  logits, cache = model(tokens[:, None], positions[:, None], segment_ids=live[:, None].astype(jnp.int32), cache=cache)
  return logits[:, 0], cache


def _prefill(graphdef, state, prompts, prompt_lengths, cache):
  """Writes the prompts into the cache; returns float32 logits [batch, vocab] after each prompt."""
  model = nnx.merge(graphdef, state)
  batch, width = prompts.shape
  slots = jnp.arange(width, dtype=jnp.int32)
  positions = jnp.broadcast_to(slots, (batch, width))
  segment_ids = (slots[None, :] < prompt_lengths[:, None]).astype(jnp.int32)
  hidden, cache = model.hidden(prompts, positions, segment_ids=segment_ids, cache=cache, prefill=True)
  last = jnp.maximum(prompt_lengths - 1, 0)
  # Unembed only the last prompt position: [batch, width, vocab] logits never exist.
  last_hidden = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
  return model.unembed(last_hidden), cache


def _batch_axes(mesh: Mesh | None, rules: LogicalRules) -> tuple[str, ...]:
  if mesh is None:
    return ()
  return as_axes(logical_to_spec(("batch",), rules)[0])


def generate_batch(
  graphdef: nnx.GraphDef,
  state: Any,
  prompts: jax.Array,
  prompt_lengths: jax.Array,
  keys: jax.Array,
  params: RowParams,
  stop_ids: jax.Array | None = None,
  active: jax.Array | None = None,
  *,
  max_new_tokens: int,
  mesh: Mesh | None = None,
  rules: LogicalRules = DEFAULT_RULES,
  weight_rules: LogicalRules | None = None,
  impl: str = "auto",
  pad_id: int = 0,
) -> GenerationOutput:
  """Samples up to max_new_tokens tokens for every row; pure, call it inside jax.jit.

  Decoding stops per row at a stop token (kept as the row's last token) or after
  max_new_tokens; the loop exits as soon as every row has finished. Each step samples through
  `ssd_jax.sampling.dispatch.sample_tokens` (temperature -> top-k -> top-p -> min-p).

  Args:
    graphdef, state: the split Transformer (state may be sharded per `rules` on `mesh`).
    prompts: int32 [batch, width], right-padded prompts.
    prompt_lengths: int32 [batch], tokens per prompt, 1..width.
    keys: typed PRNG keys [batch], one per row (see `row_keys`).
    params: RowParams of [batch] arrays (temperature 0 = greedy).
    stop_ids: int32 [num_stop] token ids that end a row; negative entries are ignored (padding).
    active: bool [batch]; inactive rows (batch padding) generate nothing. Default: all active.
    max_new_tokens: static, the most tokens a row may generate.
    mesh: the mesh the state lives on; activates `rules` for activations and the KV cache.
    rules: logical-axis rules (the training rules).
    weight_rules: the rules `state` was placed by, when a decode layout placed it apart from `rules`.
    impl: sampling implementation for `sample_tokens` ('auto', 'xla', 'reference', 'pallas').
    pad_id: token written past a row's last token.

  Returns:
    GenerationOutput.
  """
  if prompts.ndim != 2:
    raise ValueError(f"prompts must be [batch, width], got shape {prompts.shape}")
  batch, width = prompts.shape
  if prompt_lengths.shape != (batch,):
    raise ValueError(f"prompt_lengths must be [batch] = ({batch},), got {prompt_lengths.shape}")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  cfg = model_config(graphdef, state)
  if width + max_new_tokens > cfg.max_position_embeddings:
    raise ValueError(
      f"prompt width {width} + max_new_tokens {max_new_tokens} exceeds the model's "
      f"max_position_embeddings {cfg.max_position_embeddings}"
    )
  stop_ids = jnp.full((1,), -1, jnp.int32) if stop_ids is None else jnp.asarray(stop_ids, jnp.int32)
  active = jnp.ones((batch,), bool) if active is None else jnp.asarray(active, bool)
  prompt_lengths = jnp.asarray(prompt_lengths, jnp.int32)
  batch_axes = _batch_axes(mesh, rules)

  def record(progress: _Progress, logits: jax.Array, t: jax.Array, rows: jax.Array) -> _Progress:
    """Samples step t for the batch rows `rows` (int32 [n]) whose logits ([n, vocab]) are given."""
    step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys[rows], t)
    row_params = RowParams(*(field[rows] for field in params))
    sample = sample_tokens(
      logits, row_params, step_keys, impl=impl, mesh=mesh if batch_axes else None, batch_axes=batch_axes
    )
    live = ~progress.done[rows]
    put = lambda buffer, value, fill: buffer.at[rows, t].set(jnp.where(live, value, fill))
    is_stop = live & jnp.any(sample.token[:, None] == stop_ids[None, :], axis=-1)
    return _Progress(
      tokens=put(progress.tokens, sample.token, pad_id),
      logprob_raw=put(progress.logprob_raw, sample.logprob_raw, 0.0),
      logprob_sampled=put(progress.logprob_sampled, sample.logprob_sampled, 0.0),
      num_tokens=progress.num_tokens.at[rows].add(live.astype(jnp.int32)),
      stopped=progress.stopped.at[rows].set(progress.stopped[rows] | is_stop),
      done=progress.done.at[rows].set(progress.done[rows] | is_stop | (t + 1 >= max_new_tokens)),
    )

  context = use_rules(mesh, rules, weight_rules) if mesh is not None else contextlib.nullcontext()
  with context:
    cache = KVCache.init(cfg, batch, cache_slots(width + max_new_tokens))
    if mesh is not None:
      cache = jax.lax.with_sharding_constraint(cache, KVCache.shardings(mesh, rules))
    logits, cache = _prefill(graphdef, state, prompts, prompt_lengths, cache)
    zeros = jnp.zeros((batch, max_new_tokens), jnp.float32)
    progress = _Progress(
      tokens=jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
      logprob_raw=zeros,
      logprob_sampled=zeros,
      num_tokens=jnp.zeros((batch,), jnp.int32),
      stopped=jnp.zeros((batch,), bool),
      done=~active,
    )

    def step(carry):
      t, logits, cache, rows, progress = carry
      progress = record(progress, logits, t, rows)
      # Unconditional, though the last step's forward pass is wasted: under a lax.cond, XLA copies the
      # whole cache for every in-place write, which made each token cost O(max_len).
      live = ~progress.done[rows]
      logits, cache = decode_step(graphdef, state, progress.tokens[rows, t], prompt_lengths[rows] + t, live, cache)
      return t + 1, logits, cache, rows, progress

    # Finished rows stop costing: each stage decodes a batch of `size` rows until at most the next
    # stage's size are live, then the live rows (and their cache) move into the smaller batch.
    # Each batch shard compacts its own rows (`compaction`): rows never move between devices.
    shards = axes_size(mesh, batch_axes)
    sizes = compaction_sizes(batch, shards)
    carry = (jnp.int32(0), logits, cache, jnp.arange(batch, dtype=jnp.int32), progress)
    for stage, size in enumerate(sizes):
      if stage:
        t, logits, cache, rows, progress = carry
        cache, logits, rows = compact(
          cache, logits, rows, progress.done[rows], size, mesh=mesh, rules=rules, batch_axes=batch_axes
        )
        carry = (t, logits, cache, rows, progress)
      next_share = sizes[stage + 1] // shards if stage + 1 < len(sizes) else 0

      def keep_going(carry, next_share=next_share):
        rows, progress = carry[3], carry[4]
        return (most_live_per_shard(progress.done[rows], shards) > next_share) & ~jnp.all(progress.done)

      # One loop body per stage samples every step (prefill logits included), so sampling is traced once per size.
      carry = jax.lax.while_loop(keep_going, step, carry)
    steps, progress = carry[0], carry[4]
  return GenerationOutput(
    progress.tokens, progress.logprob_raw, progress.logprob_sampled, progress.num_tokens, progress.stopped, steps
  )
