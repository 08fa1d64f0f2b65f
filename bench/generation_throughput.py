"""Benchmark: greedy generation tokens/s of the sampler against Hugging Face `generate`.

Both decode the same random Qwen3-shaped model (exported with `save_hf`), the same batch of
prompts, the same number of new tokens (no early stop), greedy, float32. Compile time and
warm-up are excluded from both timings. Prints tokens/s, the ratio, the shape and the machine.

  python bench/generation_throughput.py                      # ~1-2 minutes on 2 CPU cores
  python bench/generation_throughput.py --batch 16 --new_tokens 256
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import jax
import numpy as np
import torch
import transformers
from flax import nnx

from ssd_jax.model import ModelConfig, Transformer
from ssd_jax.model.hf import save_hf
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams


def model_config(args) -> ModelConfig:
  return ModelConfig(
    vocab_size=args.vocab,
    hidden_size=args.hidden,
    intermediate_size=3 * args.hidden,
    num_layers=args.layers,
    num_heads=args.heads,
    num_kv_heads=args.heads // 2,
    head_dim=64,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
    qk_norm=True,
    max_position_embeddings=4096,
    dtype="float32",
    param_dtype="float32",
  )


def time_ours(graphdef, state, prompts, new_tokens, repeats) -> tuple[float, list[list[int]]]:
  sampler = Sampler(
    graphdef, max_len=len(prompts[0]) + new_tokens, batch_size=len(prompts), bucket_multiple=len(prompts[0])
  )
  run = lambda: sampler.generate(
    state, prompts, SamplingParams(temperature=0.0), max_new_tokens=new_tokens, progress=False
  )
  out = run()  # Compiles.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times), [g.token_ids.tolist() for g in out]


def _sync(device: str) -> None:
  if device == "cuda":
    torch.cuda.synchronize()


def time_hf(directory, prompts, new_tokens, repeats, device) -> tuple[float, list[list[int]]]:
  module = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval().to(device)
  ids = torch.tensor(prompts, device=device)
  kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0, eos_token_id=None)
  with torch.no_grad():
    module.generate(ids, max_new_tokens=4, min_new_tokens=4, **kwargs)  # Warm-up.
    times = []
    for _ in range(repeats):
      _sync(device)
      start = time.perf_counter()
      out = module.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
      _sync(device)
      times.append(time.perf_counter() - start)
  return statistics.median(times), out[:, ids.shape[1] :].cpu().numpy().tolist()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--vocab", type=int, default=32_768)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument(
    "--torch_device",
    default="auto",
    help="device for transformers: 'auto' = cuda when jax runs on a GPU and torch sees one",
  )
  args = parser.parse_args()
  device = args.torch_device
  if device == "auto":
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"

  cores = os.cpu_count() or 1
  torch.set_num_threads(cores)
  cfg = model_config(args)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  prompts = np.random.default_rng(0).integers(1, args.vocab, (args.batch, args.prompt_len)).tolist()
  generated = args.batch * args.new_tokens

  ours_s, ours_ids = time_ours(graphdef, state, prompts, args.new_tokens, args.repeats)
  with tempfile.TemporaryDirectory() as directory:
    save_hf(state, cfg, directory)
    hf_s, hf_ids = time_hf(directory, prompts, args.new_tokens, args.repeats, device)

  agree = np.mean([a == b for a, b in zip(np.ravel(ours_ids), np.ravel(hf_ids))])
  print(
    f"machine: {platform.processor() or platform.machine()}, {cores} CPUs, "
    f"jax backend {jax.default_backend()} ({jax.devices()[0].device_kind}), torch device {device}, "
    f"torch threads {torch.get_num_threads()}"
  )
  print(
    f"model: hidden {cfg.hidden_size}, layers {cfg.num_layers}, heads {cfg.num_heads}/"
    f"{cfg.num_kv_heads}, vocab {cfg.vocab_size}, {cfg.num_params / 1e6:.1f}M params, float32"
  )
  print(f"shape: batch {args.batch}, prompt {args.prompt_len}, new tokens {args.new_tokens}, greedy")
  print(f"ssd_jax Sampler:            {generated / ours_s:10.1f} tokens/s ({ours_s:.2f} s)")
  print(f"transformers generate:      {generated / hf_s:10.1f} tokens/s ({hf_s:.2f} s)")
  print(f"ratio (ssd_jax / transformers): {hf_s / ours_s:.2f}x")
  print(f"greedy tokens identical: {agree:.1%}")


if __name__ == "__main__":
  main()
