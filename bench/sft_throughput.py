"""Benchmark: SFT training tokens/s of our jitted step against a plain PyTorch/transformers step.

Both train the same random Qwen3-shaped model (exported with `save_hf`) on the same rows: full causal rows,
loss on every next token, AdamW (0.9, 0.95, wd 0.1), float32, one optimizer update per step. Ours is
`ssd_jax.train.sft_step` (chunked cross-entropy, donated state); the baseline is `Qwen3ForCausalLM` with
`labels=` and `torch.optim.AdamW`, with weight decay on matrices only (not norms or biases), as ours masks it.
Both sides' loss at step 0 (same initial weights, same batch) is checked equal. The process is pinned to
--threads cores before numpy, jax or torch start a thread pool; XLA's CPU pool (PJRT_NPROC) and torch get one
thread per core, checked. The two sides alternate step by step, each starting a round in turn, on the same
batches; compilation (and torch's warm-up step) is excluded. Prints tokens/s of each with its min-max, the
ratio, the shape and the machine.

  python bench/sft_throughput.py                      # ~1-2 minutes on 2 CPU cores
  python bench/sft_throughput.py --batch 16 --seq_len 512 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile

from bench_flags import add_model_flags


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_model_flags(parser, batch=8)
  parser.add_argument("--seq_len", type=int, default=256)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores both sides are pinned to")
  return parser.parse_args()


ARGS = parse_args()
CORES = sorted(os.sched_getaffinity(0))[: ARGS.threads]
# Before numpy, jax and torch start their thread pools: both sides get the same cores.
os.sched_setaffinity(0, set(CORES))
os.environ["PJRT_NPROC"] = str(len(CORES))  # XLA's CPU intra-op pool: one thread per pinned CPU, as torch.

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from bench_models import cpu_model, interleaved, model_config, print_sides, same_threads, sft_rows  # noqa: E402
from flax import nnx  # noqa: E402

from ssd_jax import host_platform  # noqa: E402
from ssd_jax.model import ModelConfig, Transformer  # noqa: E402
from ssd_jax.model.hf import save_hf  # noqa: E402
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer  # noqa: E402
from ssd_jax.train.sft_step import make_sft_step  # noqa: E402
from ssd_jax.train.train_state import init_train_state  # noqa: E402

LEARNING_RATE = 1e-4


def our_step(cfg: ModelConfig, steps: int):
  """A callable running one of our SFT steps on a batch (compiled by a first call here)."""
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  optimizer = make_optimizer(
    OptimizerConfig(
      learning_rate=LEARNING_RATE,
      end_learning_rate=LEARNING_RATE,
      warmup_steps=0,
      total_steps=steps + 2,
      grad_clip_norm=None,
    )
  )
  state = [init_train_state(params, optimizer)]
  step = make_sft_step(graphdef, optimizer, chunk_size=1024)

  def one(batch):
    state[0], metrics = step(state[0], batch)
    return float(metrics["loss"])  # Waits for the step.

  return one


def torch_step(cfg: ModelConfig):
  """A callable running one PyTorch/transformers SFT step on a batch (same initial weights as ours)."""
  with tempfile.TemporaryDirectory() as directory:
    save_hf(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0))), cfg, directory)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).train()
  # Ours decays matrices only (`optimizer.decays_weight`): norm gains and biases get no weight decay.
  decays = lambda name, p: p.ndim >= 2 and "norm" not in name.lower() and not name.endswith("bias")
  named = list(model.named_parameters())
  groups = [
    {"params": [p for name, p in named if decays(name, p)], "weight_decay": 0.1},
    {"params": [p for name, p in named if not decays(name, p)], "weight_decay": 0.0},
  ]
  optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(0.9, 0.95), eps=1e-8)

  def one(batch):
    ids = torch.from_numpy(batch["tokens"]).long()
    loss = model(input_ids=ids, labels=ids).loss  # transformers shifts the labels itself.
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()

  return one


def main():
  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error on a CPU machine.
  args = ARGS
  torch.set_num_threads(len(CORES))
  threads = same_threads(CORES, torch.get_num_threads())
  cfg = model_config(args)
  rng = np.random.default_rng(0)
  batches = [sft_rows(rng.integers(1, args.vocab, (args.batch, args.seq_len), dtype=np.int32)) for _ in range(3)]
  tokens = args.batch * args.seq_len

  steps = {"ssd_jax SFT step": our_step(cfg, args.steps), "PyTorch/transformers step": torch_step(cfg)}
  losses = {name: [] for name in steps}

  def walk(name):
    """Each side walks the same batches in the same order; its first call (compile, warm-up) takes the first."""
    order = itertools.cycle(batches)
    return lambda: losses[name].append(steps[name](next(order)))

  timing = interleaved({name: walk(name) for name in steps}, args.steps)
  ours_loss, torch_loss = (losses[name][0] for name in steps)
  # Same weights, same batch: the step-0 losses differ only by float32 rounding.
  np.testing.assert_allclose(ours_loss, torch_loss, rtol=1e-4, err_msg="step-0 losses differ")
  print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, pinned to {CORES}; jax {jax.default_backend()}; {threads}")
  print(
    f"model: hidden {cfg.hidden_size}, layers {cfg.num_layers}, heads {cfg.num_heads}/{cfg.num_kv_heads}, "
    f"vocab {cfg.vocab_size}, {cfg.num_params / 1e6:.1f}M params, float32"
  )
  print(
    f"shape: batch {args.batch} x seq_len {args.seq_len} = {tokens} tokens per step, AdamW, median of "
    f"{args.steps} alternating steps"
  )
  print_sides(timing, tokens, "tokens/s")
  print(f"step-0 loss: ssd_jax {ours_loss:.6f}, PyTorch {torch_loss:.6f} (checked equal within 1e-4)")


if __name__ == "__main__":
  main()
