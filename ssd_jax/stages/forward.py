"""The `forward` stage: build the sharded model, run one jitted forward, report what it cost."""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssd_jax import sharding
from ssd_jax.pipeline.context import RunContext


def run(ctx: RunContext) -> None:
  """Runs a forward pass on random tokens and writes `forward.json` with shapes, timings and logit stats."""
  config, cfg = ctx.config, ctx.model_cfg
  start = time.time()
  graphdef, state = ctx.load_model(config.model.hf_dir) if config.model.hf_dir else ctx.init_model()
  init_seconds = time.time() - start
  batch, length = config.forward.batch_size, config.forward.seq_len
  rng = np.random.default_rng(config.seed)
  tokens = rng.integers(0, cfg.vocab_size, (batch, length), dtype=np.int32)
  positions = np.broadcast_to(np.arange(length, dtype=np.int32), (batch, length))

  @jax.jit
  def forward(state, tokens, positions):
    with sharding.use_rules(ctx.mesh, ctx.rules):
      logits, _ = nnx.merge(graphdef, state)(tokens, positions)
    return logits

  with jax.set_mesh(ctx.mesh):
    tokens_sharded = sharding.shard_batch(tokens, ctx.mesh, ("batch", "length"))
    positions_sharded = sharding.shard_batch(np.ascontiguousarray(positions), ctx.mesh, ("batch", "length"))
    start = time.time()
    compiled = forward.lower(state, tokens_sharded, positions_sharded).compile()
    compile_seconds = time.time() - start
    start = time.time()
    logits = jax.block_until_ready(compiled(state, tokens_sharded, positions_sharded))
    run_seconds = time.time() - start
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  mean_nll = float(-jnp.mean(jnp.take_along_axis(logp[:, :-1], tokens[:, 1:, None], axis=-1)))
  report = {
    "model": config.model.hf_dir or config.model.preset,
    "params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)),
    "mesh": dict(ctx.mesh.shape),
    "devices": jax.device_count(),
    "backend": jax.default_backend(),
    "batch": batch,
    "seq_len": length,
    "logits_shape": list(logits.shape),
    "logits_finite": bool(jnp.isfinite(logits).all()),
    "mean_next_token_nll": mean_nll,
    "uniform_nll": float(np.log(cfg.vocab_size)),
    "init_seconds": init_seconds,
    "compile_seconds": compile_seconds,
    "forward_seconds": run_seconds,
  }
  if ctx.is_coordinator:
    with open(ctx.layout.forward_report, "w") as f:
      json.dump(report, f, indent=2)
  print(
    f"[forward] {report['model']}: {report['params']:,} params on mesh {report['mesh']} ({report['backend']}); "
    f"logits {report['logits_shape']}, next-token NLL {mean_nll:.3f} (uniform {report['uniform_nll']:.3f}); "
    f"compile {compile_seconds:.2f}s, forward {run_seconds * 1e3:.1f}ms"
  )
