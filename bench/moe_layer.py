"""Benchmark: mixture-of-experts cost on CPU, two ratios.

1. One MoE layer's experts, forward + backward: the grouped matmul (`model.expert_dispatch`: rows sorted by
   expert; the 'tiled' implementation that 'auto' picks off TPU, and `lax.ragged_dot`) against a per-expert
   loop of dense matmuls (gather the expert's rows, SwiGLU, scatter-add back), on the same routing, the same
   weights and the same tokens. The routing is a runtime input of every side, as a router's output is: the
   loop finds each expert's rows when it runs, padded to a static capacity (the largest expert load, so no
   row is dropped; padding rows have gate 0).
2. SFT step tokens/s (`train.sft_step`, AdamW, float32) of a small MoE model against the dense model of the
   same active size (intermediate_size = top_k x moe_intermediate_size, everything else equal).

Both sides of each ratio run in this process on the same XLA CPU thread pool; repeats are interleaved, and
compile time is reported apart from the median step time.

  python bench/moe_layer.py                 # ~2-3 minutes on 2 CPU cores
  python bench/moe_layer.py --tokens 8192 --experts 64 --top_k 8
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from bench_models import (
  cpu_model,
  interleaved,
  sft_rows,
  timed_call,
)  # The same SFT rows as the SFT throughput benchmark.
from flax import nnx

from ssd_jax import host_platform
from ssd_jax.model import ModelConfig, Transformer
from ssd_jax.model.expert_dispatch import routed_experts
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.sft_step import make_sft_step
from ssd_jax.train.train_state import init_train_state

IMPLS = ("tiled", "ragged_dot")


def layer_ratio(args) -> None:
  rng = np.random.default_rng(0)
  n, d, f, e, k = args.tokens, args.hidden, args.expert_width, args.experts, args.top_k
  x = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
  weights = [jnp.asarray(rng.standard_normal(s) * 0.05, jnp.float32) for s in ((e, d, f), (e, d, f), (e, f, d))]
  # Fixed routing: distinct experts per token, uneven loads (as a trained router gives).
  popularity = rng.dirichlet(np.full(e, 0.5))
  index = np.stack([rng.choice(e, k, replace=False, p=popularity) for _ in range(n)]).astype(np.int32)
  gates = jnp.asarray(rng.uniform(0.1, 1.0, (n, k)), jnp.float32)
  routing = (jnp.asarray(index), gates)
  loads = np.bincount(index.reshape(-1), minlength=e)
  capacity = int(loads.max())

  def grouped(x, w_gate, w_up, w_down, index, gates, impl):
    return jnp.sum(routed_experts(x, index, gates, w_gate, w_up, w_down, impl) ** 2)

  def loop(x, w_gate, w_up, w_down, index, gates):
    out = jnp.zeros_like(x)
    for expert in range(e):
      # The token ids and choice slots routed to this expert, found at run time; padding takes row 0, gate 0.
      tokens, slots = jnp.nonzero(index == expert, size=capacity, fill_value=0)
      gate = jnp.where(jnp.arange(capacity) < jnp.sum(index == expert), gates[tokens, slots], 0.0)
      h = x[tokens]
      y = (jax.nn.silu(h @ w_gate[expert]) * (h @ w_up[expert])) @ w_down[expert]
      out = out.at[tokens].add(y * gate[:, None])
    return jnp.sum(out**2)

  grouped_step = jax.jit(jax.value_and_grad(grouped, argnums=(0, 1, 2, 3)), static_argnums=6)
  loop_step = jax.jit(jax.value_and_grad(loop, argnums=(0, 1, 2, 3)))
  compiled = {}  # Compile + first call, timed here: the answer check below makes each side's first call.
  compiled["loop"], (l_val, l_grads) = timed_call(lambda: loop_step(x, *weights, *routing))
  for impl in IMPLS:  # Same work, same answer.
    compiled[impl], (g_val, g_grads) = timed_call(lambda: grouped_step(x, *weights, *routing, impl))
    np.testing.assert_allclose(float(g_val), float(l_val), rtol=1e-4)
    for a, b in zip(g_grads, l_grads):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)
  fns = {impl: (lambda impl=impl: grouped_step(x, *weights, *routing, impl)) for impl in IMPLS}
  timing = interleaved({**fns, "loop": lambda: loop_step(x, *weights, *routing)}, args.repeats)
  print(
    f"MoE layer experts, fwd+bwd: {n} tokens x top-{k} of {e} experts, hidden {d}, expert width {f}, float32; "
    f"expert loads min/median/max {loads.min()}/{int(np.median(loads))}/{loads.max()}; the loop runs "
    f"{e} x {capacity} rows ({e * capacity / (n * k):.2f}x the {n * k} routed)"
  )
  routed, computed = n * k, {**{impl: n * k for impl in IMPLS}, "loop": e * capacity}
  for name in (*IMPLS, "loop"):
    median = timing[name].median
    print(
      f"  {name:<10s} {median * 1e3:8.1f} ms/step (min-max {timing[name].spread(1e3, 1)}), "
      f"{median / routed * 1e6:6.2f} us per routed row, {median / computed[name] * 1e6:6.2f} us per row computed "
      f"(compile + first call {compiled[name]:.1f} s)"
    )
  for impl in IMPLS:
    print(f"  ratio (loop / grouped {impl}): {timing['loop'].median / timing[impl].median:.2f}x")


def _sft_timer(cfg: ModelConfig, batches):
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  optimizer = make_optimizer(
    OptimizerConfig(learning_rate=1e-4, end_learning_rate=1e-4, warmup_steps=0, total_steps=1000, grad_clip_norm=None)
  )
  box = {"state": init_train_state(params, optimizer), "i": 0}
  step = make_sft_step(graphdef, optimizer, chunk_size=1024)

  def run():
    box["state"], metrics = step(box["state"], batches[box["i"] % len(batches)])
    box["i"] += 1
    return metrics

  return run


def sft_ratio(args) -> None:
  moe = ModelConfig(
    vocab_size=args.vocab,
    hidden_size=args.hidden,
    intermediate_size=args.top_k * args.expert_width,
    num_layers=args.layers,
    num_heads=4,
    num_kv_heads=2,
    head_dim=args.hidden // 4,
    tie_embeddings=True,
    dtype="float32",
    param_dtype="float32",
    num_experts=args.experts,
    num_experts_per_tok=args.top_k,
    moe_intermediate_size=args.expert_width,
    norm_topk_prob=True,
    router_aux_loss_coef=0.001,
  )
  dense = moe.replace(num_experts=0, num_experts_per_tok=0, moe_intermediate_size=0, norm_topk_prob=False)
  assert dense.num_params == moe.num_active_params - moe.num_layers * moe.hidden_size * moe.num_experts  # No router.
  rng = np.random.default_rng(0)
  shape = (args.batch, args.seq_len)
  batches = [sft_rows(rng.integers(1, args.vocab, shape, dtype=np.int32)) for _ in range(3)]
  timing = interleaved({"moe": _sft_timer(moe, batches), "dense": _sft_timer(dense, batches)}, args.repeats)
  tokens = args.batch * args.seq_len
  print(
    f"SFT step: batch {args.batch} x seq_len {args.seq_len}, hidden {args.hidden}, {args.layers} layers, vocab "
    f"{args.vocab}; MoE {moe.num_params / 1e6:.1f}M params ({moe.num_active_params / 1e6:.1f}M active) vs dense "
    f"{dense.num_params / 1e6:.1f}M (intermediate {dense.intermediate_size})"
  )
  for name, t in timing.items():
    print(
      f"  {name:<6s} {tokens / t.median:9.1f} tokens/s ({t.median * 1e3:.0f} ms/step, min-max {t.spread(1e3, 0)}; "
      f"compile + first step {t.first:.1f} s)"
    )
  print(f"  ratio (MoE / dense tokens/s): {timing['dense'].median / timing['moe'].median:.2f}x")


def main():
  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error on a CPU machine.
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tokens", type=int, default=4096)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--experts", type=int, default=32)
  parser.add_argument("--top_k", type=int, default=4)
  parser.add_argument("--expert_width", type=int, default=128)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--vocab", type=int, default=8192)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--seq_len", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  print(
    f"machine: {cpu_model()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
    f"backend {jax.default_backend()} (both sides share one XLA thread pool)"
  )
  layer_ratio(args)
  sft_ratio(args)


if __name__ == "__main__":
  main()
