"""Benchmark: two sampler directions measured before being kept, each against the path it would replace.

1. Several thresholds per pass. The whole-vocabulary search (`truncation`, used where no candidate
   list applies: top-k off with a flat top-p set, top-k above 256) bisects on the order key. Probing m
   thresholds per pass needs about log2(keys) / log2(m + 1) passes, each one variadic reduce doing m
   times the counting. Timed on the top-p search of flat rows (top-k off), with m = 1, 2, 4 and 8
   against the library's search (`truncation_cutoff`, `row_search.THRESHOLDS_PER_PASS` per pass);
   every variant must return the library's cut-off exactly.
2. Sampling fused into the LM head. The candidate path reads the logits the LM-head matmul wrote; fused,
   the matmul runs over vocabulary chunks and keeps only each row's running candidates and softmax
   normaliser, so full logits never travel through memory. Timed: the matmul, then the candidate pass
   (`candidates.top_candidates` of the first candidate list, the row maximum and log-sum-exp), against two
   fused variants (a running top-n merged with each chunk; the running n + 1 best chunk-wide blocks, as the
   unfused pass selects them; n and the chunk width are the first list's); each must give the same
   candidates and indices.

Everything runs in this process on one pinned core (XLA without its multi-threaded Eigen pool);
repeats are interleaved and the first call (compile) is reported apart.

  python bench/sampler_directions.py --cpu 0
"""

from __future__ import annotations

import argparse
import functools
import os

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--cpu", type=int, default=0, help="the CPU this process is pinned to")
ARGS.add_argument("--batch", type=int, default=32)
ARGS.add_argument("--vocab", type=int, default=151_936)
ARGS.add_argument("--hidden", type=int, default=256, help="LM-head input width")
ARGS.add_argument("--chunks", default="4096,16384", help="vocabulary entries per fused step")
ARGS.add_argument("--thresholds", default="1,2,4,8", help="thresholds per pass")
ARGS.add_argument("--repeats", type=int, default=5)
ARGS = ARGS.parse_args()
# Before jax starts its thread pool.
os.sched_setaffinity(0, {ARGS.cpu})
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_models import cpu_model, interleaved, timed_call  # noqa: E402
from jax import lax  # noqa: E402

from ssd_jax import host_platform  # noqa: E402
from ssd_jax.kernels import truncation_ops as ops  # noqa: E402
from ssd_jax.sampling import candidates, row_search, truncation  # noqa: E402
from ssd_jax.sampling.params import RowParams, SamplingParams  # noqa: E402


@functools.partial(jax.jit, static_argnames="thresholds")
def top_p_cutoff_several(logits: jax.Array, rows: RowParams, thresholds: int) -> jax.Array:
  """The top-p cut-off of rows with top-k and min-p off, `thresholds` per pass. int32 [batch].

  The library's search (`row_search.probe_keys` under `truncation_ops.bisect_largest`) with the
  number of thresholds per pass as a parameter; each pass is one variadic reduce over the row.
  """
  d = truncation.tempered_logits(logits, rows)
  keys = ops.order_key(d)
  limbs = ops.mass_parts(d)
  lo, hi = ops.top_p_bracket(jnp.full((d.shape[0], 1), ops.INT32_MIN), rows.top_p[:, None], rows.temperature[:, None])
  target = rows.top_p[:, None] * ops.mass_value(*row_search.sums_at_or_above(keys, limbs, lo))

  def probe(t):
    sums, lowest, highest = row_search.probe_keys(keys, limbs, t)
    return ops.mass_value(*sums) >= target, lowest, highest

  return ops.bisect_largest(probe, lo, hi, thresholds)[:, 0]


@jax.jit
def head_then_candidates(h: jax.Array, table: jax.Array):
  """The unfused path: logits = h @ table.T, then the candidate pass over them."""
  x = h @ table.T
  raw_max = jnp.max(x, axis=-1, keepdims=True)
  log_sum = jnp.log(jnp.sum(jnp.exp(x - raw_max), axis=-1, keepdims=True))
  values, index, _ = candidates.top_candidates(x, candidates.LISTS[0])
  return values, index, raw_max, log_sum


def _vocab_chunks(table: jax.Array, chunk: int) -> jax.Array:
  vocab, hidden = table.shape
  steps = -(-vocab // chunk)
  return jnp.pad(table, ((0, steps * chunk - vocab), (0, 0))).reshape(steps, chunk, hidden)


def _chunk_logits(h, rows_of_table, offset, chunk, vocab, running_max, running_sum):
  """One chunk's logits [batch, chunk] (-inf past the vocabulary) and the updated online normaliser."""
  columns = offset + jnp.arange(chunk, dtype=jnp.int32)
  x = jnp.where(columns < vocab, h @ rows_of_table.T, -jnp.inf)
  new_max = jnp.maximum(running_max, jnp.max(x, axis=-1, keepdims=True))
  new_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(jnp.exp(x - new_max), axis=-1, keepdims=True)
  return x, columns, new_max, new_sum


@functools.partial(jax.jit, static_argnames="chunk")
def fused_running_top(h: jax.Array, table: jax.Array, chunk: int):
  """Fused: each vocabulary chunk's logits are merged into a running top-`length` of the first list (lax.top_k)."""
  batch, vocab, n = h.shape[0], table.shape[0], candidates.LISTS[0].length

  def body(carry, rows_of_table):
    values, index, running_max, running_sum, offset = carry
    x, columns, running_max, running_sum = _chunk_logits(
      h, rows_of_table, offset, chunk, vocab, running_max, running_sum
    )
    # The running list first: on ties the lower vocabulary index wins, as in one top-k over the row.
    top, position = lax.top_k(jnp.concatenate([values, x], axis=-1), n)
    pool_index = jnp.concatenate([index, jnp.broadcast_to(columns, x.shape)], axis=-1)
    return (top, jnp.take_along_axis(pool_index, position, axis=-1), running_max, running_sum, offset + chunk), None

  init = (
    jnp.full((batch, n), -jnp.inf),
    jnp.zeros((batch, n), jnp.int32),
    jnp.full((batch, 1), -jnp.inf),
    jnp.zeros((batch, 1)),
    jnp.int32(0),
  )
  (values, index, raw_max, raw_sum, _), _ = lax.scan(body, init, _vocab_chunks(table, chunk))
  return values, index, raw_max, jnp.log(raw_sum)


@functools.partial(jax.jit, static_argnames="chunk")
def fused_running_blocks(h: jax.Array, table: jax.Array, chunk: int):
  """Fused: the running `length` + 1 best chunks of the first list by maximum, then one top-k over them."""
  batch, vocab, width = h.shape[0], table.shape[0], candidates.LISTS[0].chunk
  keep = candidates.LISTS[0].length + 1

  def body(carry, rows_of_table):
    block_max, block_id, blocks, running_max, running_sum, offset = carry
    x, _, running_max, running_sum = _chunk_logits(h, rows_of_table, offset, chunk, vocab, running_max, running_sum)
    new_blocks = x.reshape(batch, chunk // width, width)
    new_ids = jnp.broadcast_to(offset // width + jnp.arange(chunk // width, dtype=jnp.int32), new_blocks.shape[:2])
    top, position = lax.top_k(jnp.concatenate([block_max, jnp.max(new_blocks, axis=-1)], axis=-1), keep)
    block_id = jnp.take_along_axis(jnp.concatenate([block_id, new_ids], axis=-1), position, axis=-1)
    blocks = jnp.take_along_axis(jnp.concatenate([blocks, new_blocks], axis=1), position[:, :, None], axis=1)
    return (top, block_id, blocks, running_max, running_sum, offset + chunk), None

  init = (
    jnp.full((batch, keep), -jnp.inf),
    jnp.zeros((batch, keep), jnp.int32),
    jnp.full((batch, keep, width), -jnp.inf),
    jnp.full((batch, 1), -jnp.inf),
    jnp.zeros((batch, 1)),
    jnp.int32(0),
  )
  (_, block_id, blocks, raw_max, raw_sum, _), _ = lax.scan(body, init, _vocab_chunks(table, chunk))
  # Blocks in vocabulary order, so that ties keep the first index as the whole-row pass does.
  order = jnp.argsort(block_id, axis=-1)
  block_id = jnp.take_along_axis(block_id, order, axis=-1)
  blocks = jnp.take_along_axis(blocks, order[:, :, None], axis=1)
  values, position = lax.top_k(blocks.reshape(batch, keep * width), candidates.LISTS[0].length)
  ids = (block_id[:, :, None] * width + jnp.arange(width, dtype=jnp.int32)).reshape(batch, -1)
  return values, jnp.take_along_axis(ids, position, axis=-1), raw_max, jnp.log(raw_sum)


def _time_and_print(title: str, fns: dict, compiled: dict, base: str, repeats: int) -> None:
  """Times `fns` interleaved and prints each median and min-max against `base`'s median.

  `compiled` holds each one's first call (compile), timed where the result checks made it.
  """
  timing = interleaved(fns, repeats)
  print(title)
  for name, t in timing.items():
    print(
      f"  {name:38s} {t.median * 1e3:9.1f} ms (min-max {t.spread(1e3, 1)})   {t.median / timing[base].median:5.2f}x "
      f"{base:>10s}   compile + first call {compiled[name]:5.2f} s"
    )


def thresholds_per_pass(args) -> None:
  """Direction 1: the top-p search with several thresholds per pass."""
  rows = SamplingParams(temperature=0.7, top_k=0, top_p=0.95).rows(args.batch)
  logits = jax.random.normal(jax.random.key(0), (args.batch, args.vocab)) * 3
  fns = {"library bisection (truncation_cutoff)": lambda: truncation.truncation_cutoff(logits, rows)}
  for count in [int(p) for p in args.thresholds.split(",")]:
    fns[f"{count} threshold(s) per pass"] = functools.partial(top_p_cutoff_several, logits, rows, count)
  # The checks make every first call (compile), so they are timed here.
  compiled, reference = {}, None
  for name, fn in fns.items():
    compiled[name], cut = timed_call(fn)
    if reference is None:
      reference = cut
    elif not bool(jnp.all(cut == reference)):
      raise AssertionError(f"{name} changed the cut-off")
  title = f"[thresholds] top-p 0.95 search, T 0.7, top-k off, [{args.batch}, {args.vocab}] float32 normal x 3"
  _time_and_print(f"{title} (cut-offs equal to the library's)", fns, compiled, "1 threshold(s) per pass", args.repeats)


def fused_lm_head(args) -> None:
  """Direction 2: the candidate pass fused into the LM-head matmul."""
  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.normal(size=(args.batch, args.hidden)), jnp.float32)
  table = jnp.asarray(rng.normal(size=(args.vocab, args.hidden)) * 0.05, jnp.float32)
  fns = {"matmul, then candidates": lambda: head_then_candidates(h, table)}
  for chunk in [int(c) for c in args.chunks.split(",")]:
    for name, fused in [
      (f"running top-{candidates.LISTS[0].length}", fused_running_top),
      ("running blocks", fused_running_blocks),
    ]:
      fns[f"fused, {name}, chunk {chunk}"] = functools.partial(fused, h, table, chunk)
  # The checks make every first call (compile), so they are timed here.
  compiled, reference = {}, None
  for name, fn in fns.items():
    compiled[name], out = timed_call(fn)
    if reference is None:
      reference = out
    elif not (bool(jnp.all(out[0] == reference[0])) and bool(jnp.all(out[1] == reference[1]))):
      raise AssertionError(f"{name} changed the candidates")
  title = f"[fused LM head] h [{args.batch}, {args.hidden}] @ table [{args.vocab}, {args.hidden}].T float32"
  _time_and_print(
    f"{title} (candidates and indices equal to the unfused pass)",
    fns,
    compiled,
    "matmul, then candidates",
    args.repeats,
  )


def main() -> None:
  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error on a CPU machine.
  print(
    f"machine: {cpu_model()}, pinned to CPU {ARGS.cpu} of {os.cpu_count()}, "
    f"jax {jax.__version__} {jax.default_backend()}, {ARGS.repeats} interleaved repeats"
  )
  thresholds_per_pass(ARGS)
  fused_lm_head(ARGS)


if __name__ == "__main__":
  main()
