"""Benchmark: the GPU sampler against the HBM-read roofline at [batch, vocab] bf16 (GPU only).

The roofline is the time to read the logits once: bytes / peak HBM bandwidth (the datasheet's,
and the bandwidth a plain XLA row-max reaches on this device, printed first). Timed, on the
same logits and per-row parameters, interleaved round after round with compile time apart:

- ours, end to end: `sample_tokens(impl="pallas")` (two kernels, the whole-vocabulary kernel
  for the rows the candidate list does not answer, and the merge);
- ours, the two kernels alone (`block_maxima` then `sample_from_blocks`), and the first alone
  at several chunk sizes and warp counts;
- the whole-vocabulary kernel alone (the path before the candidate list, and the GPU path's
  fallback for rows the list does not answer), at each `--kernel_thresholds` count of
  thresholds per bisection pass;
- ours, the XLA path (`impl="xla"`); top-k first then top-p in XLA; and, where torch sees the
  GPU, top-k first and the transformers warpers in torch.

A JAX implementation is timed as one program that samples `--slices` different logits arrays
one after the other (separate arrays, not slices of one, so no copy is added), run under the
profiler: the figure is the GPU's busy time (kernels and copies on its streams) per slice, read
from the profile, so neither the Python dispatch (about as long as the kernels here) nor launch
gaps count; wall time per slice is printed beside it. A torch implementation is measured the same
way, by the same profiler: called on the same `--slices` arrays (as torch tensors) in turn, its
figure the GPU's busy time per slice.
First an agreement check: tokens and cut-offs against the whole-vocabulary reference on mixed
per-row parameters, and the fraction of rows the candidate list answered.

  python bench/sampler_roofline.py --batches 256 --vocabs 151936
"""

from __future__ import annotations

import argparse
import functools
import glob
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_models import add_sampling_flags, peak_bandwidth, sampling_params
from sampler_baselines import top_k_first_xla, torch_samplers

from ssd_jax.kernels import block_candidates as bc
from ssd_jax.kernels.truncated_sampling import truncated_sampling_pallas
from ssd_jax.sampling.dispatch import DEFAULT_TILE, sample_tokens
from ssd_jax.sampling.params import RowParams, SamplingParams
from ssd_jax.sampling.truncation import sample_reference

WHOLE_TILE = DEFAULT_TILE["gpu"]  # the whole-vocabulary kernel's tile on GPU


def _columns(rows: RowParams):
  return rows.temperature[:, None], rows.top_k[:, None], rows.top_p[:, None], rows.min_p[:, None]


def jax_implementations(args, rows):
  seeds = lambda bits: jax.lax.bitcast_convert_type(bits, jnp.int32)
  impls = {
    "ours: pallas end to end": lambda x, bits: sample_tokens(x, rows, bits, impl="pallas").token,
    "ours: two kernels alone": lambda x, bits: bc.sample_from_blocks(
      x, *bc.block_maxima(x), *_columns(rows), seeds(bits)
    )[0],
    "ours: xla path": lambda x, bits: sample_tokens(x, rows, bits, impl="xla").token,
    "top-k first (XLA)": lambda x, bits: top_k_first_xla(x, rows, jax.random.key(bits[0, 0]), k=args.top_k),
    "read floor: row max (XLA)": lambda x, bits: jnp.max(x, axis=-1),
  }
  for n in args.kernel_thresholds:
    # Each threshold keeps its own [1, tile] accumulators in registers: with n the tile shrinks by n
    # too, to the same footprint as one threshold at the default tile.
    for tile in sorted({WHOLE_TILE, max(128, WHOLE_TILE // n // 128 * 128)}, reverse=True):
      impls[f"ours: whole-vocabulary kernel ({n} thresholds per pass, tile {tile})"] = functools.partial(
        _whole_vocabulary, rows=rows, thresholds=n, tile=tile
      )
  for warps in args.second_warps:
    impls[f"two kernels alone (second with {warps} warps)"] = functools.partial(_two_passes, rows=rows, warps=warps)
  for chunk_blocks in args.chunk_blocks:
    for warps in args.warps:
      name = f"first kernel alone ({chunk_blocks * 128} per program, {warps} warps)"
      impls[name] = functools.partial(_first_pass, chunk_blocks=chunk_blocks, warps=warps)
  # One program samples every slice: the launches run back to back on the device and one
  # dispatch (about 45 us from Python on the H200 machine measured) is shared by all of them.
  return {name: jax.jit(functools.partial(_each, fn)) for name, fn in impls.items()}


def _each(fn, xs, bits):
  return [fn(x, b) for x, b in zip(xs, bits)]


def _two_passes(x, bits, *, rows, warps):
  seeds = jax.lax.bitcast_convert_type(bits, jnp.int32)
  return bc.sample_from_blocks(x, *bc.block_maxima(x), *_columns(rows), seeds, num_warps=warps)[0]


def _whole_vocabulary(x, bits, *, rows, thresholds, tile=WHOLE_TILE):
  """(token, cut-off), int32 [batch, 1] each."""
  seeds = jax.lax.bitcast_convert_type(bits, jnp.int32)
  out = truncated_sampling_pallas(
    x, *_columns(rows), seeds, block_rows=1, tile=tile, backend="gpu", thresholds=thresholds
  )
  return out[0], out[3]


def _first_pass(x, bits, *, chunk_blocks, warps):
  return bc.block_maxima(x, chunk_blocks=chunk_blocks, num_warps=warps)[1]


def torch_implementations(params: SamplingParams):
  try:
    import torch
  except ImportError:
    return {}
  return torch_samplers(params) if torch.cuda.is_available() else {}


def agreement(batch, vocab, dtype, kernel_thresholds, seed=0):
  """Tokens and cut-offs of the GPU path, and of the whole-vocabulary kernel at each number of
  thresholds per pass, against the reference, mixed per-row parameters."""
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * 3.0, dtype)
  rows = RowParams(
    temperature=jnp.asarray(rng.choice([0.0, 1e-3, 0.7, 1.0, 1.6], batch), jnp.float32),
    top_k=jnp.asarray(rng.choice([1, 5, 20, 20, 32, 0], batch), jnp.int32),
    top_p=jnp.asarray(rng.choice([1e-7, 0.3, 0.8, 0.95, 1.0], batch), jnp.float32),
    min_p=jnp.asarray(rng.choice([0.0, 0.01, 0.2], batch), jnp.float32),
  )
  bits = jax.random.bits(jax.random.key(seed), (batch, 2), jnp.uint32)
  reference = jax.jit(sample_reference)(logits, rows, bits)
  ours = jax.jit(lambda x, r, b: sample_tokens(x, r, b, impl="pallas"))(logits, rows, bits)
  seeds = jax.lax.bitcast_convert_type(bits, jnp.int32)
  exact = bc.sample_from_blocks(logits, *bc.block_maxima(logits), *_columns(rows), seeds)[4]
  same = lambda a, b: float(np.mean(np.asarray(a) == np.asarray(b)))
  diff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
  print(
    f"[agreement, batch {batch}, vocab {vocab}] vs reference: tokens {same(ours.token, reference.token):.4f} "
    f"equal, cut-offs {same(ours.cutoff, reference.cutoff):.4f} equal, |logprob_raw| diff "
    f"{diff(ours.logprob_raw, reference.logprob_raw):.1e}, |logprob_sampled| diff "
    f"{diff(ours.logprob_sampled, reference.logprob_sampled):.1e}; rows answered by the candidate list "
    f"{float(np.mean(np.asarray(exact))):.3f} (top-k off rows go to the whole-vocabulary kernel)"
  )
  for n in kernel_thresholds:
    token, cutoff = jax.jit(functools.partial(_whole_vocabulary, rows=rows, thresholds=n))(logits, bits)
    print(
      f"[agreement] whole-vocabulary kernel, {n} thresholds per pass: tokens "
      f"{same(token[:, 0], reference.token):.4f} equal, cut-offs {same(cutoff[:, 0], reference.cutoff):.4f} equal"
    )


def device_busy(run, calls: int, slices: int):
  """(device seconds, wall seconds) per slice of `calls` runs of `run()`, each over `slices` arrays.

  Device time is the sum of the GPU's kernel, copy and memset durations on its streams (launch
  gaps excluded), read from JAX's profile; wall time includes the dispatch. The profiler records
  every CUDA launch of the process, so torch is measured by the same tracer (torch's own profiler
  keeps CUPTI subscribed after it stops, and JAX's next trace then fails)."""
  with tempfile.TemporaryDirectory() as folder:
    jax.profiler.start_trace(folder)
    start = time.perf_counter()
    for _ in range(calls):
      run()
    wall = (time.perf_counter() - start) / calls / slices
    jax.profiler.stop_trace()
    data = jax.profiler.ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])
  busy = sum(
    event.duration_ns
    for plane in data.planes
    if plane.name.startswith("/device:GPU")
    for line in plane.lines
    if line.name.startswith("Stream")
    for event in line.events
  )
  if not busy:
    raise RuntimeError(
      f"no GPU stream events in the profile: {[(p.name, [l.name for l in p.lines]) for p in data.planes]}"
    )
  return busy / 1e9 / calls / slices, wall


def time_jax(fn, xs, bits, calls):
  """`device_busy` of `calls` programs, each sampling every slice."""
  return device_busy(lambda: jax.block_until_ready(fn(xs, bits)), calls, len(xs))


def time_torch(fn, xs, calls):
  """`device_busy` of `calls` passes over the slices (torch tensors on the GPU)."""
  import torch

  def run():
    for x in xs:
      fn(x)
    torch.cuda.synchronize()

  return device_busy(run, calls, len(xs))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", default="256")
  parser.add_argument("--vocabs", default="151936")
  add_sampling_flags(parser, temperature=1.0, top_p=0.95)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--slices", type=int, default=16, help="logits arrays per JAX program and per torch pass")
  parser.add_argument(
    "--calls_per_trace", type=int, default=4, help="JAX programs, and torch passes over the slices, per profiled round"
  )
  parser.add_argument("--chunk_blocks", default="32,64,128")
  parser.add_argument("--warps", default="4,8")
  parser.add_argument("--second_warps", default="1,2,8")
  parser.add_argument(
    "--kernel_thresholds", default="1,4", help="thresholds per bisection pass of the whole-vocabulary kernel"
  )
  args = parser.parse_args()
  args.kernel_thresholds = [int(n) for n in args.kernel_thresholds.split(",")]
  args.chunk_blocks = [int(c) for c in args.chunk_blocks.split(",")]
  args.warps = [int(w) for w in args.warps.split(",")]
  args.second_warps = [int(w) for w in args.second_warps.split(",")]
  device = jax.devices()[0]
  peak = peak_bandwidth(device)
  warm = jax.jit(lambda x: jnp.max(x @ x))  # lifts the clocks from idle before anything is timed
  jax.block_until_ready([warm(jnp.ones((8192, 8192), jnp.bfloat16)) for _ in range(50)])
  print(f"machine: {device.platform} {device.device_kind}, jax {jax.__version__}, datasheet HBM {peak}")
  params = sampling_params(args)
  for vocab in [int(v) for v in args.vocabs.split(",")]:
    for batch in [int(b) for b in args.batches.split(",")]:
      try:
        agreement(batch, vocab, jnp.bfloat16, args.kernel_thresholds)
      except Exception as error:  # still time what compiles
        print(f"[agreement] failed: {str(error).splitlines()[0][:300]}")
      rows = params.rows(batch)
      xs = [
        (jax.random.normal(jax.random.key(i), (batch, vocab), jnp.float32) * 3.0).astype(jnp.bfloat16)
        for i in range(args.slices)
      ]
      bits = [jax.random.bits(jax.random.key(1000 + i), (batch, 2), jnp.uint32) for i in range(args.slices)]
      impls = jax_implementations(args, rows)
      torch_impls = torch_implementations(params)
      xs_torch = []
      if torch_impls:
        import torch

        xs_torch = [torch.from_numpy(np.array(x.astype(jnp.float32))).to("cuda", torch.bfloat16) for x in xs]
      compile_s, times = {}, {name: [] for name in [*impls, *torch_impls]}
      walls = {name: [] for name in times}
      for name, fn in list(impls.items()):
        start = time.perf_counter()
        try:
          jax.block_until_ready(fn(xs, bits))
        except Exception as error:  # report the variant that does not compile and time the rest
          print(f"  {name}: failed: {str(error).splitlines()[0][:300]}")
          del impls[name], times[name], walls[name]
          continue
        compile_s[name] = time.perf_counter() - start
      for fn in torch_impls.values():
        for x in xs_torch:
          fn(x)
      for _ in range(args.rounds):  # interleaved: every implementation sees the same device state
        for name, fn in impls.items():
          device, wall = time_jax(fn, xs, bits, args.calls_per_trace)
          times[name].append(device)
          walls[name].append(wall)
        for name, fn in list(torch_impls.items()):
          try:
            device, wall = time_torch(fn, xs_torch, args.calls_per_trace)
          except RuntimeError as error:  # the JAX rows still get timed
            print(f"  {name}: not timed: {str(error)[:300]}")
            del torch_impls[name], times[name], walls[name]
            continue
          times[name].append(device)
          walls[name].append(wall)
      read = batch * vocab * 2
      floor = statistics.median(times["read floor: row max (XLA)"])
      print(
        f"[batch {batch}, vocab {vocab}, bf16, T {args.temperature} top-k {args.top_k} top-p {args.top_p}] "
        f"logits {read / 1e6:.1f} MB; roofline {read / peak * 1e6:.1f} us at the datasheet's "
        f"{peak / 1e12:.2f} TB/s; the XLA row max reads at {read / floor / 1e12:.2f} TB/s"
      )
      for name, seconds in times.items():
        median = statistics.median(seconds)
        wall = f"wall {statistics.median(walls[name]) * 1e6:7.1f} us"
        first = f"first call {compile_s[name]:5.2f} s, {wall}" if name in compile_s else f"torch, {wall}"
        print(
          f"  {name:50s} {median * 1e6:8.1f} us  ({first})  roofline {read / median / peak * 100:6.1f}%  "
          f"of the row max {floor / median * 100:6.1f}%  (rounds {min(seconds) * 1e6:.1f}-{max(seconds) * 1e6:.1f} us)"
        )


if __name__ == "__main__":
  main()
