"""Benchmark: truncated sampling on [batch, vocab] logits.

Compares the sort-free XLA reference and the fused Pallas kernel (where an accelerator runs it)
against the baseline, sort-based top-p (sort + cumulative sum, as most engines do it). Prints
median times, ratios to the baseline, bytes of logits read, and on an accelerator the fraction
of the HBM roofline (logits bytes / time / peak bandwidth).

  python bench/truncated_sampling.py                       # CPU: a few quick shapes
  python bench/truncated_sampling.py --check               # accelerator: agreement, then sweep
  python bench/truncated_sampling.py --tpu_estimate        # libtpu compile-time estimates, v5e

Decoding parameters are the SSD paper's training setting (T 1.6, top-k 20, top-p 0.8) unless
overridden.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssd_jax.sampling.dispatch import sample_tokens
from ssd_jax.sampling.params import RowParams, SamplingParams
from ssd_jax.sampling.truncation import sample_reference
from ssd_jax.sampling.truncation_sorted import sorted_sample

# Peak HBM bandwidth in bytes/s by device kind (public spec sheets), for the roofline fraction.
PEAK_HBM_BYTES_PER_S = {
  "H100": 3.35e12,
  "H200": 4.8e12,
  "A100": 2.0e12,
  "TPU v5 lite": 8.19e11,
  "TPU v5e": 8.19e11,
  "TPU v5p": 2.765e12,
  "TPU v5": 2.765e12,
  "TPU v6 lite": 1.64e12,
  "TPU v4": 1.2e12,
}


def peak_bandwidth(device) -> float | None:
  kind = device.device_kind
  for name in sorted(PEAK_HBM_BYTES_PER_S, key=len, reverse=True):
    if name in kind:
      return PEAK_HBM_BYTES_PER_S[name]
  return None


def median_seconds(fn, args, iters: int) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def implementations(on_accelerator: bool):
  impls = {
    "sort-based (baseline)": lambda x, rows, key: sorted_sample(x, rows, key),
    "reference (sort-free XLA)": lambda x, rows, key: (
      sample_reference(x, rows, jax.random.bits(key, (x.shape[0], 2), jnp.uint32)).token
    ),
  }
  if on_accelerator:
    impls["pallas kernel"] = lambda x, rows, key: sample_tokens(x, rows, key, impl="pallas").token
  return {name: jax.jit(fn) for name, fn in impls.items()}


def run_timings(args) -> None:
  device = jax.devices()[0]
  on_accelerator = device.platform in ("tpu", "gpu")
  peak = peak_bandwidth(device) if on_accelerator else None
  print(
    f"machine: {device.platform} {device.device_kind} x{jax.device_count()}, "
    f"jax {jax.__version__}; params {args.params}; dtype {args.dtype}"
  )
  if on_accelerator and peak is None:
    print("  (unknown device kind: no roofline fraction)")
  impls = implementations(on_accelerator)
  dtype = jnp.dtype(args.dtype)
  for vocab in args.vocabs:
    for batch in args.batches:
      logits = jax.random.normal(jax.random.key(0), (batch, vocab), jnp.float32) * 3.0
      logits = logits.astype(dtype)
      rows = args.params.rows(batch)
      key = jax.random.key(1)
      read = batch * vocab * dtype.itemsize
      print(f"[batch {batch}, vocab {vocab}] logits read: {read / 1e6:.1f} MB")
      baseline = None
      for name, fn in impls.items():
        seconds = median_seconds(fn, (logits, rows, key), args.iters)
        baseline = baseline or seconds
        line = f"  {name:28s} {seconds * 1e3:9.3f} ms   x{baseline / seconds:6.2f} vs baseline"
        if peak is not None:
          line += f"   HBM roofline {read / seconds / peak * 100:6.2f}%"
        print(line)


def run_agreement_check(args) -> None:
  """Kernel vs reference on this accelerator, mixed per-row parameters: fraction that agree.

  Interpreted on CPU they agree exactly (tests pin it); compiled, transcendental functions may
  differ in the last bit between the kernel compiler and XLA, which can move rare ties.
  """
  rng = np.random.default_rng(0)
  for vocab in args.vocabs:
    for batch in args.batches:
      logits = jnp.asarray(rng.normal(size=(batch, vocab)) * 3.0, jnp.dtype(args.dtype))
      rows = RowParams(
        temperature=jnp.asarray(rng.choice([0.0, 1e-3, 0.7, 1.6, 1e4], batch), jnp.float32),
        top_k=jnp.asarray(rng.choice([0, 1, 20, vocab - 1, vocab], batch), jnp.int32),
        top_p=jnp.asarray(rng.choice([1e-7, 0.3, 0.8, 0.95, 1.0], batch), jnp.float32),
        min_p=jnp.asarray(rng.choice([0.0, 0.01, 0.2], batch), jnp.float32),
      )
      bits = jax.random.bits(jax.random.key(batch), (batch, 2), jnp.uint32)
      reference = sample_reference(logits, rows, bits)
      kernel = sample_tokens(logits, rows, bits, impl="pallas")
      same = lambda a, b: float(np.mean(np.asarray(a) == np.asarray(b)))
      diff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
      print(
        f"[batch {batch}, vocab {vocab}] kernel vs reference: tokens "
        f"{same(kernel.token, reference.token):.3f} equal, cut-offs "
        f"{same(kernel.cutoff, reference.cutoff):.3f} equal, |logprob_raw| diff "
        f"{diff(kernel.logprob_raw, reference.logprob_raw):.1e}, |logprob_sampled| diff "
        f"{diff(kernel.logprob_sampled, reference.logprob_sampled):.1e}"
      )


def run_tpu_estimate(args) -> None:
  """Compiles reference and kernel for one v5e chip with libtpu and prints its estimates."""
  from jax.experimental import topologies
  from jax.sharding import SingleDeviceSharding

  topology = topologies.get_topology_desc("v5e:2x2", "tpu")
  chip = topology.devices[0]
  dtype = jnp.dtype(args.dtype)
  print(f"ESTIMATE (libtpu compile-time cost analysis, not a measurement): {chip.device_kind}")
  print(
    "  the kernel's flops/bytes are its own declared pl.CostEstimate; the reference's are "
    "libtpu's analysis of the XLA program"
  )
  for vocab in args.vocabs:
    for batch in args.batches:
      rows = args.params.rows(batch)
      place = SingleDeviceSharding(chip)
      logits = jax.ShapeDtypeStruct((batch, vocab), dtype, sharding=place)
      bits = jax.ShapeDtypeStruct((batch, 2), jnp.uint32, sharding=place)
      rows = jax.tree.map(lambda r: jax.ShapeDtypeStruct(r.shape, r.dtype, sharding=place), rows)
      for name, fn in [
        ("reference", lambda x, r, b: sample_reference(x, r, b).token),
        ("pallas kernel", lambda x, r, b: sample_tokens(x, r, b, impl="pallas").token),
      ]:
        compiled = jax.jit(fn).lower(logits, rows, bits).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        memory = compiled.memory_analysis()
        print(
          f"  [batch {batch}, vocab {vocab}] {name:14s} flops {cost.get('flops', 0):.3e}  "
          f"transcendentals {cost.get('transcendentals', 0):.3e}  "
          f"bytes accessed {cost.get('bytes accessed', 0):.3e}  "
          f"HBM temp {memory.temp_size_in_bytes / 1e6:.1f} MB"
        )


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  on_accelerator = jax.default_backend() in ("tpu", "gpu")
  parser.add_argument("--batches", default="1,8,64,256" if on_accelerator else "1,8")
  parser.add_argument("--vocabs", default="151936,128256" if on_accelerator else "151936")
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  parser.add_argument("--iters", type=int, default=20 if on_accelerator else 3)
  parser.add_argument("--temperature", type=float, default=1.6)
  parser.add_argument("--top_k", type=int, default=20)
  parser.add_argument("--top_p", type=float, default=0.8)
  parser.add_argument("--min_p", type=float, default=0.0)
  parser.add_argument("--check", action="store_true", help="on an accelerator, first report kernel/reference agreement")
  parser.add_argument(
    "--tpu_estimate", action="store_true", help="print libtpu's compile-time cost estimates for v5e instead of timing"
  )
  args = parser.parse_args()
  args.batches = [int(b) for b in args.batches.split(",")]
  args.vocabs = [int(v) for v in args.vocabs.split(",")]
  args.params = SamplingParams(args.temperature, args.top_k, args.top_p, args.min_p)
  return args


def main():
  args = parse_args()
  if args.tpu_estimate:
    run_tpu_estimate(args)
    return
  if args.check and jax.default_backend() in ("tpu", "gpu"):
    run_agreement_check(args)
  run_timings(args)


if __name__ == "__main__":
  main()
