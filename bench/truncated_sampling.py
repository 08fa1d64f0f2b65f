"""Benchmark: truncated sampling on [batch, vocab] logits, against the strongest baselines.

Ours: the XLA path ('xla': candidate lists for top-k up to 256 and peaked top-p rows, the
whole-vocabulary search otherwise), the bisection reference, and the fused Pallas kernel where an
accelerator runs it. Baselines: top-k first then top-p over the k survivors (XLA, and torch as
inference engines do it), the transformers sampling path (TopK and TopP logits warpers, softmax,
multinomial), and sort-based top-p. All implementations are timed in turn, round after round
(interleaved, each starting a round in turn), with compile time apart; medians are printed with
their min-max and ratios. `--forward` also times one decode step of a model with this vocabulary,
the cost the sampler is added to, in the same rounds. On an
accelerator, the fraction of the HBM roofline (logits bytes / time / peak bandwidth) is printed.

  python bench/truncated_sampling.py --cpus 0 --batches 32 --top_p 0.95 --temperature 1 --forward
  python bench/truncated_sampling.py --check               # accelerator: agreement, then sweep

The process pins itself to --cpus (default: every CPU it may use) before jax and torch start, and
both sides get one thread per pinned CPU: XLA's CPU intra-op pool through PJRT_NPROC, torch through
torch.set_num_threads; the header prints both and a run where they differ is refused. On CPU the
truncated sets (support) are compared first: ours must equal the exact rule (the bisection
reference); the baselines' agreement is printed, since they may keep part of a run of logits tied at
the cut-off (frequent in bfloat16; ours keeps every tie) and sum top-p mass in float32. Decoding
parameters are the SSD paper's training setting (T 1.6, top-k 20, top-p 0.8) unless overridden.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys


def _pin_from_argv() -> list[int]:
  """--cpus, applied before jax and torch create their thread pools (which inherit the affinity)."""
  cpus = sorted(os.sched_getaffinity(0))
  for i, arg in enumerate(sys.argv):
    value = arg.split("=", 1)[1] if arg.startswith("--cpus=") else (sys.argv[i + 1] if arg == "--cpus" else None)
    if value:
      cpus = [int(c) for c in value.split(",")]
  os.sched_setaffinity(0, set(cpus))
  os.environ["PJRT_NPROC"] = str(len(cpus))  # XLA's CPU intra-op pool: one thread per pinned CPU, as torch.
  return cpus


PINNED = _pin_from_argv()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_models import (  # noqa: E402
  add_sampling_flags,
  cpu_model,
  interleaved,
  peak_bandwidth,
  same_threads,
  sampling_params,
  xla_cpu_threads,
)
from sampler_baselines import top_k_first_xla, top_k_first_xla_kept, torch_kept, torch_samplers  # noqa: E402

from ssd_jax import host_platform  # noqa: E402
from ssd_jax.kernels.truncation_ops import order_key  # noqa: E402
from ssd_jax.sampling.dispatch import sample_tokens  # noqa: E402
from ssd_jax.sampling.params import RowParams, SamplingParams  # noqa: E402
from ssd_jax.sampling.truncation import kept_mask, sample_reference, tempered_logits  # noqa: E402
from ssd_jax.sampling.truncation_sorted import sorted_kept_mask, sorted_sample  # noqa: E402

FORWARD = "forward decode step"


def _torch_implementations(params: SamplingParams):
  import torch

  torch.set_num_threads(len(PINNED))
  return {name: (lambda fn: lambda x, rows, key: fn(x))(fn) for name, fn in torch_samplers(params).items()}


def implementations(on_accelerator: bool, params: SamplingParams):
  """name -> (callable(logits, rows, key), framework)."""
  bits = lambda x, key: jax.random.bits(key, (x.shape[0], 2), jnp.uint32)
  impls = {
    "ours: xla fast path": lambda x, rows, key: sample_tokens(x, rows, bits(x, key), impl="xla").token,
    "ours: bisection reference": lambda x, rows, key: sample_reference(x, rows, bits(x, key)).token,
    "sort-based top-p (XLA)": lambda x, rows, key: sorted_sample(x, rows, key),
  }
  if params.top_k > 0 and not params.greedy:
    impls["top-k first (XLA)"] = lambda x, rows, key: top_k_first_xla(x, rows, key, k=params.top_k)
  if on_accelerator:
    impls["ours: pallas kernel"] = lambda x, rows, key: sample_tokens(x, rows, key, impl="pallas").token
  out = {name: (jax.jit(fn), "jax") for name, fn in impls.items()}
  if not on_accelerator:
    out.update({name: (fn, "torch") for name, fn in _torch_implementations(params).items()})
  return out


def _forward_step(batch: int, vocab: int, args):
  """A callable running one decode step (cache of args.context filled slots) of a model with this vocabulary."""
  from flax import nnx

  from ssd_jax.model import KVCache, ModelConfig, Transformer
  from ssd_jax.sampling.decode_loop import decode_step

  cfg = ModelConfig(
    vocab_size=vocab,
    hidden_size=args.hidden,
    intermediate_size=3 * args.hidden,
    num_layers=args.layers,
    num_heads=4,
    num_kv_heads=2,
    head_dim=64,
    tie_embeddings=True,
    qk_norm=True,
    max_position_embeddings=4096,
    dtype="float32",
    param_dtype="float32",
  )
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  cache = KVCache.init(cfg, batch, args.context + 1)
  cache = cache.replace(valid=cache.valid.at[:, : args.context].set(True), index=jnp.int32(args.context))
  step = jax.jit(
    lambda s, c: decode_step(
      graphdef, s, jnp.ones((batch,), jnp.int32), jnp.full((batch,), args.context), jnp.ones((batch,), bool), c
    )[0]
  )
  print(
    f"  model: hidden {args.hidden}, layers {args.layers}, {cfg.num_params / 1e6:.1f}M params, float32, "
    f"{args.context} cached tokens"
  )
  return lambda: step(state, cache)


def check_supports(logits, x_torch, rows, params: SamplingParams) -> None:
  """Compares each implementation's truncated set with the exact rule's (the bisection reference's).

  Tokens are random per call, so the sets the draws come from are compared instead. Ours must match in
  every row; the baselines' agreement is printed (they may keep part of a run of logits tied at the
  cut-off, and float32 top-p sums can move the boundary token).

  Raises:
    AssertionError: our fast path's set differs from the reference's in some row.
  """
  bits = jax.random.bits(jax.random.key(0), (logits.shape[0], 2), jnp.uint32)
  cutoff = jax.jit(lambda x, r, b: sample_tokens(x, r, b, impl="xla").cutoff)(logits, rows, bits)
  exact = np.asarray(kept_mask(logits, rows))
  kept = {
    "ours: xla fast path": np.asarray(order_key(tempered_logits(logits, rows)) >= cutoff[:, None]),
    "sort-based top-p (XLA)": np.asarray(sorted_kept_mask(logits, rows)),
  }
  if params.top_k > 0 and not params.greedy:
    kept["top-k first (XLA)"] = np.asarray(
      jax.jit(top_k_first_xla_kept, static_argnames="k")(logits, rows, k=params.top_k)
    )
  kept.update({name: support(x_torch).numpy() for name, support in torch_kept(params).items()})
  print(f"  support vs the exact rule (bisection reference, {exact.sum(-1).min()}-{exact.sum(-1).max()} tokens kept):")
  for name, mask in kept.items():
    rows_equal = int(np.all(mask == exact, axis=-1).sum())
    differ = int(np.max(np.sum(mask != exact, axis=-1)))
    print(f"    {name:30s} equal in {rows_equal}/{len(exact)} rows, at most {differ} tokens differ in a row")
  assert np.array_equal(kept["ours: xla fast path"], exact), (
    "our fast path's truncated set differs from the reference's"
  )


def run_timings(args) -> None:
  device = jax.devices()[0]
  on_accelerator = device.platform in ("tpu", "gpu")
  peak = peak_bandwidth(device) if on_accelerator else None
  name = f"{device.device_kind} x{jax.device_count()}" if on_accelerator else cpu_model()
  print(
    f"machine: {device.platform} {name}, jax {jax.__version__}, "
    f"pinned to CPUs {PINNED} of {os.cpu_count()} (a shared machine: other jobs may run); "
    f"params {args.params}; dtype {args.dtype}"
  )
  if on_accelerator and peak is None:
    print("  (unknown device kind: no roofline fraction)")
  impls = implementations(on_accelerator, args.params)
  if on_accelerator:
    print(f"  threads: XLA CPU intra-op pool {xla_cpu_threads()} (torch is not timed on an accelerator)")
  else:
    import torch

    print(f"  {same_threads(PINNED, torch.get_num_threads())}")
  dtype = jnp.dtype(args.dtype)
  for vocab in args.vocabs:
    for batch in args.batches:
      logits = jax.random.normal(jax.random.key(0), (batch, vocab), jnp.float32) * 3.0
      if args.peak:  # A trained model's shape: a few plausible tokens far above a long tail.
        raised = jax.random.choice(jax.random.key(2), vocab, (args.peak,), replace=False)
        logits = logits.at[:, raised].add(args.peak_height)
      logits = logits.astype(dtype)
      x_torch = None
      if not on_accelerator:
        import torch

        x_torch = torch.from_numpy(np.array(logits.astype(jnp.float32))).to(getattr(torch, args.dtype))
      rows = args.params.rows(batch)
      key = jax.random.key(1)
      read = batch * vocab * dtype.itemsize
      shape = f", {args.peak} tokens raised by {args.peak_height}" if args.peak else ", normal x 3"
      print(f"[batch {batch}, vocab {vocab}{shape}] logits read: {read / 1e6:.1f} MB")
      if not on_accelerator:
        check_supports(logits, x_torch, rows, args.params)
      fns = {
        name: functools.partial(fn, x_torch if framework == "torch" else logits, rows, key)
        for name, (fn, framework) in impls.items()
      }
      if args.forward:  # In the same rounds, so "sampler / forward" compares the same machine load.
        fns[FORWARD] = _forward_step(batch, vocab, args)
      timing = interleaved(fns, args.iters)
      forward = timing.pop(FORWARD, None)
      ours = timing["ours: xla fast path"].median
      for name, t in timing.items():
        line = (
          f"  {name:30s} {t.median * 1e3:9.3f} ms (min-max {t.spread(1e3)})  (first call {t.first:6.2f} s)  "
          f"{t.median / ours:6.2f}x the time of ours"
        )
        if peak is not None:
          line += f"   HBM roofline {read / t.median / peak * 100:6.2f}%"
        print(line)
      if forward is not None:
        print(
          f"  {FORWARD:30s} {forward.median * 1e3:9.3f} ms (min-max {forward.spread(1e3)});  "
          f"ours / forward = {ours / forward.median:.2f}"
        )


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


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  on_accelerator = jax.default_backend() in ("tpu", "gpu")
  parser.add_argument("--batches", default="1,8,64,256" if on_accelerator else "1,8")
  parser.add_argument("--vocabs", default="151936,128256" if on_accelerator else "151936")
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  parser.add_argument("--iters", type=int, default=20 if on_accelerator else 5)
  add_sampling_flags(parser)
  parser.add_argument("--cpus", default="", help="pin to these CPUs (read before jax starts)")
  parser.add_argument("--peak", type=int, default=0, help="raise this many tokens of every row by --peak_height")
  parser.add_argument("--peak_height", type=float, default=14.0)
  parser.add_argument("--forward", action="store_true", help="also time one decode step of a model at this vocab")
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--context", type=int, default=256)
  parser.add_argument("--check", action="store_true", help="on an accelerator, first report kernel/reference agreement")
  args = parser.parse_args()
  args.batches = [int(b) for b in args.batches.split(",")]
  args.vocabs = [int(v) for v in args.vocabs.split(",")]
  args.params = sampling_params(args)
  return args


def main():
  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error on a CPU machine.
  args = parse_args()
  if args.check and jax.default_backend() in ("tpu", "gpu"):
    run_agreement_check(args)
  run_timings(args)


if __name__ == "__main__":
  main()
