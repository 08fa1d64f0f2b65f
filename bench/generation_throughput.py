"""Benchmark: generation tokens/s of the Sampler against transformers `generate`, sampling and greedy.

Both sides decode the same random Qwen3-shaped model (exported with `save_hf`), the same batch of
prompts and the same number of new tokens (no stop token), float32, on the same pinned CPU core(s)
with the same thread count: the process pins itself with sched_setaffinity before jax or torch
start, XLA's CPU intra-op pool gets one thread per pinned CPU (PJRT_NPROC) and torch as many
(torch.set_num_threads); the header prints both and a run where they differ is refused. The
sides alternate repeat by repeat, each starting a round in turn; compile time (first call) is
reported apart and excluded; medians are printed with each side's min-max. Every side must return
batch x new tokens. Modes: 'sample' (T 1, top-k 20, top-p 0.95), against two transformers sides:
`generate` with its warpers off and a top-k-first-then-top-p logits processor (the headline: the
strongest common baseline, as inference engines sample), and `generate` with its own TopK and TopP
warpers (whose TopP sorts the whole vocabulary every step); and 'greedy'. `--scaling` also reports
our cost per token at two completion lengths (their runs alternate repeat by repeat too), and what
grows with the length: cache attention alone (every layer, one decode query per row) at each run's
mean filled slots, as a read rate of the filled cache next to the core's streaming read rate.
With `--gpu` both sides run on the first GPU instead (jax's default backend must be one), float32
matrix products at full precision on both (no TF32), so greedy tokens can be compared.

  python bench/generation_throughput.py --batch 32
  python bench/generation_throughput.py --batch 1 --new_tokens 128
  python bench/generation_throughput.py --batch 32 --scaling 128,1024 --modes sample
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile

from bench_flags import add_model_flags


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_model_flags(parser, batch=8)
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--modes", default="sample,greedy")
  parser.add_argument("--cpus", default="0", help="comma-separated CPU ids both sides are pinned to")
  parser.add_argument("--scaling", default="", help="e.g. 128,1024: our per-token cost at these lengths")
  parser.add_argument("--scan_layers", action="store_true", help="our model's layers stacked and scanned")
  parser.add_argument("--gpu", action="store_true", help="both sides on the first GPU (host work on --cpus)")
  args = parser.parse_args()
  args.cpus = [int(c) for c in args.cpus.split(",")]
  args.modes = [m for m in args.modes.split(",") if m]
  args.scaling = [int(n) for n in args.scaling.split(",")] if args.scaling else []
  return args


ARGS = parse_args()
# Before jax and torch start their thread pools.
os.sched_setaffinity(0, set(ARGS.cpus))
os.environ["PJRT_NPROC"] = str(len(ARGS.cpus))  # XLA's CPU intra-op pool: one thread per pinned CPU, as torch.

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from bench_models import cpu_model, interleaved, model_config, print_sides, same_threads  # noqa: E402
from flax import nnx  # noqa: E402
from sampler_baselines import transformers_generate_kwargs  # noqa: E402

from ssd_jax import host_platform  # noqa: E402
from ssd_jax.model import Transformer, cache_layout  # noqa: E402
from ssd_jax.model.cache_attention import cache_attention  # noqa: E402
from ssd_jax.model.hf import save_hf  # noqa: E402
from ssd_jax.model.kv_cache import cache_slots  # noqa: E402
from ssd_jax.sampling.generate import Sampler  # noqa: E402
from ssd_jax.sampling.params import SamplingParams  # noqa: E402

SAMPLING = SamplingParams(temperature=1.0, top_k=20, top_p=0.95)
GREEDY = SamplingParams(temperature=0.0)
OURS = "ssd_jax Sampler"


def ours(graphdef, state, prompts, new_tokens, params):
  """A callable running one generation; returns the completions' token lists, each `new_tokens` long."""
  sampler = Sampler(
    graphdef, max_len=len(prompts[0]) + new_tokens, batch_size=len(prompts), bucket_multiple=len(prompts[0])
  )

  def run():
    out = [
      g.token_ids.tolist() for g in sampler.generate(state, prompts, params, max_new_tokens=new_tokens, progress=False)
    ]
    assert [len(ids) for ids in out] == [new_tokens] * len(prompts), "ssd_jax stopped early"
    return out

  return run


def theirs(module, prompts, new_tokens, generate_kwargs):
  """A callable running one transformers `generate`; returns the new tokens, [batch, new_tokens] as lists."""
  ids = torch.tensor(prompts, device=module.device)
  kwargs = dict(attention_mask=torch.ones_like(ids), pad_token_id=0, eos_token_id=None, **generate_kwargs)

  def run():
    with torch.no_grad():
      out = module.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    assert out.shape == (len(prompts), ids.shape[1] + new_tokens), f"transformers returned {tuple(out.shape)}"
    return out[:, ids.shape[1] :].cpu().numpy().tolist()  # waits for the device

  return run


def attention_read_rates(cfg, batch: int, prompt_len: int, lengths: list[int], repeats: int = 20) -> None:
  """Prints cache attention's time and read rate at each run's mean filled slots, and the streaming rate.

  The attention calls and the streaming read (of the last length's bytes) are timed interleaved.
  """
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(batch, 1, cfg.num_heads, cfg.head_dim)), jnp.float32)
  attend = jax.jit(
    lambda q, k, v, index, valid: sum(cache_attention(q, k, v, layer, index, valid) for layer in range(cfg.num_layers))
  )
  fns, filled, read = {}, {}, {}
  for new_tokens in lengths:
    slots = cache_slots(prompt_len + new_tokens)
    k_shape, v_shape = cache_layout.shapes(cfg.num_layers, batch, slots, cfg.num_kv_heads, cfg.head_dim)
    k, v = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in (k_shape, v_shape))
    index, valid = jnp.int32(prompt_len + new_tokens // 2 - 1), jnp.ones((batch, slots), bool)
    fns[new_tokens] = functools.partial(attend, q, k, v, index, valid)
    filled[new_tokens] = prompt_len + new_tokens // 2
    read[new_tokens] = 2 * cfg.num_layers * batch * filled[new_tokens] * cfg.num_kv_heads * cfg.head_dim * 4
  streamed = read[lengths[-1]]
  fns["stream"] = functools.partial(jax.jit(jnp.sum), jnp.ones((streamed // 4,), jnp.float32))
  timing = interleaved(fns, repeats)
  for new_tokens in lengths:
    seconds = timing[new_tokens].median
    print(
      f"[scaling] cache attention alone at {new_tokens} new tokens ({filled[new_tokens]} mean filled slots, "
      f"{read[new_tokens] / 1e6:.0f} MB of keys and values): {seconds * 1e3:.2f} ms per step "
      f"(min-max {timing[new_tokens].spread(1e3, 2)} ms), {read[new_tokens] / seconds / 1e9:.1f} GB/s"
    )
  stream = timing["stream"]
  print(
    f"[scaling] streaming read of {streamed / 1e6:.0f} MB (jnp.sum): {streamed / stream.median / 1e9:.1f} GB/s "
    f"(min-max {stream.spread(1e3, 2)} ms)"
  )


def main():
  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error on a CPU machine.
  args = ARGS
  torch.set_num_threads(len(args.cpus))
  if args.gpu:
    if jax.default_backend() != "gpu" or not torch.cuda.is_available():
      raise SystemExit(
        f"--gpu: jax's backend is {jax.default_backend()}, torch sees a GPU: {torch.cuda.is_available()}"
      )
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
  cfg = model_config(args).replace(scan_layers=args.scan_layers)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  prompts = np.random.default_rng(0).integers(1, args.vocab, (args.batch, args.prompt_len)).tolist()
  print(
    f"machine: {cpu_model()}, pinned to CPUs {args.cpus} of {os.cpu_count()} "
    f"(shared machine: other jobs may run), jax {jax.__version__} {jax.default_backend()} "
    f"({jax.devices()[0].device_kind}), "
    f"torch {torch.__version__}; {same_threads(args.cpus, torch.get_num_threads())}"
  )
  print(
    f"model: hidden {cfg.hidden_size}, layers {cfg.num_layers}, heads {cfg.num_heads}/{cfg.num_kv_heads}, "
    f"vocab {cfg.vocab_size}, {cfg.num_params / 1e6:.1f}M params, float32, scan_layers {cfg.scan_layers}; "
    f"batch {args.batch}, prompt {args.prompt_len}, new tokens {args.new_tokens}"
  )
  with tempfile.TemporaryDirectory() as directory:
    save_hf(state, cfg, directory)
    module = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
  if args.gpu:
    module = module.cuda()
  generated = args.batch * args.new_tokens
  for mode in args.modes:
    params = {"sample": SAMPLING, "greedy": GREEDY}[mode]
    label = "greedy" if params.greedy else f"sample T {params.temperature}, top-k {params.top_k}, top-p {params.top_p}"
    runs = {OURS: ours(graphdef, state, prompts, args.new_tokens, params)}
    for name, kwargs in transformers_generate_kwargs(params).items():
      runs[name] = theirs(module, prompts, args.new_tokens, kwargs)
    timing = interleaved(runs, args.repeats)
    print_sides(timing, generated, "tokens/s", label)
    if params.greedy:
      ours_ids, hf_ids = (t.out for t in timing.values())
      agree = np.mean(np.asarray(ours_ids) == np.asarray(hf_ids))
      print(f"[greedy] tokens identical to transformers: {agree:.1%}")
  if args.scaling:
    # The lengths alternate repeat by repeat, so a drift in the machine's speed moves both alike.
    runs = {new_tokens: ours(graphdef, state, prompts, new_tokens, SAMPLING) for new_tokens in args.scaling}
    timing = interleaved(runs, args.repeats)
    costs = {new_tokens: timing[new_tokens].median / new_tokens for new_tokens in args.scaling}
    for new_tokens in args.scaling:
      print(
        f"[scaling] {new_tokens} new tokens: {costs[new_tokens] * 1e3:.2f} ms per step "
        f"(min-max {timing[new_tokens].spread(1e3 / new_tokens, 2)} ms; batch {args.batch})"
      )
    short, long = args.scaling[0], args.scaling[-1]
    print(f"[scaling] per-token cost at {long} / at {short} new tokens: {costs[long] / costs[short]:.2f}x")
    attention_read_rates(cfg, args.batch, args.prompt_len, args.scaling)


if __name__ == "__main__":
  main()
