"""`sample_tokens`: truncated sampling through the Pallas kernel or XLA.

The kernels run on TPU (the whole-vocabulary kernel) and GPU (`kernels.block_candidates`: one
read of the logits and a candidate list per row, then the whole-vocabulary kernel for the rows
the list does not answer); XLA runs everywhere and is the default on CPU: 'xla' is the fast path
(`candidates`: candidate lists for top-k up to 256, peaked top-p and greedy rows, else the
reference), 'reference' the whole-vocabulary bisection (`truncation`).
All take the same per-row parameters and random bits and return the same token and cut-off.
With a mesh, the call is wrapped in `jax.shard_map` over the batch axes, which a Pallas TPU
call inside a sharded program needs; each device samples its own rows with the whole
vocabulary.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ssd_jax.kernels import block_candidates
from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.kernels.truncated_sampling import truncated_sampling_pallas
from ssd_jax.sampling.candidates import sample_fast
from ssd_jax.sampling.params import ParamsLike, RowParams, as_row_params
from ssd_jax.sampling.truncation import TruncatedSample, sample_reference
from ssd_jax.sharding import as_axes, axes_size

IMPLS = ("auto", "xla", "reference", "pallas")
# Vocabulary entries per inner-loop step: 8 vregs per array on TPU; on GPU, fewer and longer
# steps hide load latency (4096 measured fastest on an H100 at vocab 151,936).
DEFAULT_TILE = {"tpu": 1024, "gpu": 4096}


def row_bits(rng_or_bits: jax.Array, batch: int) -> jax.Array:
  """Per-row random bits, uint32 [batch, 2].

  Args:
    rng_or_bits: a PRNG key (typed scalar key or raw uint32 [2]) that is split over the rows,
      typed per-row keys [batch], or the bits themselves as uint32/int32 [batch, 2].
    batch: number of rows.
  """
  x = jnp.asarray(rng_or_bits)
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    if x.shape == ():
      return jax.random.bits(x, (batch, 2), jnp.uint32)
    if x.shape == (batch,):
      return jax.vmap(lambda k: jax.random.bits(k, (2,), jnp.uint32))(x)
    raise ValueError(f"PRNG keys must be a scalar key or one per row [{batch}], got {x.shape}")
  if x.shape == (2,) and x.dtype == jnp.uint32:
    return jax.random.bits(x, (batch, 2), jnp.uint32)
  if x.shape == (batch, 2) and x.dtype in (jnp.uint32, jnp.int32):
    return jax.lax.bitcast_convert_type(x, jnp.uint32)
  raise ValueError(
    f"rng_or_bits must be a PRNG key or uint32 bits [batch, 2] = [{batch}, 2], got {x.dtype}{list(x.shape)}"
  )


def resolve_impl(impl: str, interpret: bool = False) -> str:
  """'auto' is the kernel on TPU and GPU (or when interpreting) and the XLA fast path elsewhere."""
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
  if impl != "auto":
    return impl
  return "pallas" if interpret or jax.default_backend() in ("tpu", "gpu") else "xla"


def _sample_pallas(logits, rows: RowParams, bits, *, interpret, block_rows, tile, backend, thresholds):
  backend = backend or ("gpu" if jax.default_backend() == "gpu" and not interpret else "tpu")
  if block_rows is None:
    block_rows = 1 if backend == "gpu" else 8
  tile = tile or DEFAULT_TILE[backend]
  if tile % 128:
    raise ValueError(f"tile must be a multiple of 128, got {tile}")
  params = (rows.temperature[:, None], rows.top_k[:, None], rows.top_p[:, None], rows.min_p[:, None])
  seeds = jax.lax.bitcast_convert_type(bits, jnp.int32)
  whole = functools.partial(
    truncated_sampling_pallas,
    logits,
    *params,
    seeds,
    block_rows=block_rows,
    tile=tile,
    backend=backend,
    interpret=interpret,
    thresholds=thresholds,
  )
  if backend != "gpu" or not block_candidates.applies(logits.shape[1]):
    return TruncatedSample(*(out[:, 0] for out in whole()))
  # GPU: one read of the logits and a candidate list per row; the whole-vocabulary kernel then
  # runs only for the rows the list does not answer exactly (no host round trip to decide).
  maxima = block_candidates.block_maxima(logits, interpret=interpret)
  *listed, exact = block_candidates.sample_from_blocks(logits, *maxima, *params, seeds, interpret=interpret)
  rest = whole(skip=exact)
  return TruncatedSample(*(jnp.where(exact == 1, a, b)[:, 0] for a, b in zip(listed, rest)))


def _sample_local(logits, rows, bits, *, impl, **kernel_options):
  if impl == "xla":
    return sample_fast(logits, rows, bits)
  if impl == "reference":
    return sample_reference(logits, rows, bits)
  return _sample_pallas(logits, rows, bits, **kernel_options)


def sample_tokens(
  logits: jax.Array,
  params: ParamsLike,
  rng_or_bits: jax.Array,
  *,
  impl: str = "auto",
  interpret: bool = False,
  mesh: Mesh | None = None,
  batch_axes: str | Sequence[str] = ("data", "fsdp"),
  block_rows: int | None = None,
  tile: int | None = None,
  backend: str | None = None,
  thresholds: int = 1,
) -> TruncatedSample:
  """Draws one token per row: temperature -> top-k -> top-p -> min-p -> sample.

  Args:
    logits: [batch, vocab] float32 or bfloat16, vocab <= 262,144.
    params: `SamplingParams` for every row, a list of them, or `RowParams` ([batch] arrays).
    rng_or_bits: a PRNG key or per-row random bits (see `row_bits`). The same bits give the
      same tokens with either implementation.
    impl: 'auto' (kernel on TPU/GPU, 'xla' on CPU), 'xla', 'reference' or 'pallas'.
    interpret: run the Pallas kernel in the interpreter (for CPU tests).
    mesh: when given, shard the batch over `batch_axes` of this mesh with `jax.shard_map`;
      the batch must divide evenly.
    batch_axes: mesh axes the batch is split over.
    block_rows: rows per kernel grid step (default 8 on TPU, 1 on GPU).
    tile: vocabulary entries per kernel inner-loop step, a multiple of 128 (default 1024 on
      TPU, 4096 on GPU).
    backend: the kernel variant, 'tpu' or 'gpu' (default: the running backend's; 'tpu' when
      interpreting), so that CPU tests can interpret either.
    thresholds: probes per bisection pass of the whole-vocabulary kernel (one: its speed on a
      device with more is not measured yet; `bench/sampler_roofline.py --kernel_thresholds`).

  Returns:
    TruncatedSample with token, logprob_raw, logprob_sampled and cutoff, each [batch].
  """
  if logits.ndim != 2:
    raise ValueError(f"logits must be [batch, vocab], got shape {logits.shape}")
  batch, vocab = logits.shape
  if backend not in (None, *DEFAULT_TILE):
    raise ValueError(f"backend must be one of {tuple(DEFAULT_TILE)} or None, got {backend!r}")
  if vocab > ops.MAX_VOCAB:
    raise ValueError(f"vocab {vocab} exceeds the supported maximum {ops.MAX_VOCAB}")
  rows = as_row_params(params, batch)
  bits = row_bits(rng_or_bits, batch)
  local = functools.partial(
    _sample_local,
    impl=resolve_impl(impl, interpret),
    interpret=interpret,
    block_rows=block_rows,
    tile=tile,
    backend=backend,
    thresholds=thresholds,
  )
  if mesh is None:
    return local(logits, rows, bits)

  axes = as_axes(batch_axes)
  shards = axes_size(mesh, axes)
  if batch % shards:
    raise ValueError(f"batch {batch} is not divisible by the {shards} shards of mesh axes {axes}")
  row = P(axes)
  mapped = jax.shard_map(
    local,
    mesh=mesh,
    in_specs=(P(axes, None), RowParams(row, row, row, row), P(axes, None)),
    out_specs=TruncatedSample(row, row, row, row),
    check_vma=False,
  )
  return mapped(logits, rows, bits)
