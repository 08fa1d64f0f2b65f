"""The `forward` stage: build the sharded model, run one jitted forward, report what it cost."""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ssd_jax import sharding
from ssd_jax.methods.runtime import Runtime


def run_forward(config: ml_collections.ConfigDict, workdir: str, run: Runtime) -> None:
  """Runs a forward pass on random tokens and writes `forward.json` with shapes, timings and logit stats."""
  cfg = run.model_cfg
  start = time.time()
  model = run.model_from_config(config)
  graphdef, state = nnx.split(model)
  init_seconds = time.time() - start
  batch, length = config.forward.batch_size, config.forward.seq_len
  rng = np.random.default_rng(config.seed)
  tokens = rng.integers(0, cfg.vocab_size, (batch, length), dtype=np.int32)
  positions = np.broadcast_to(np.arange(length, dtype=np.int32), (batch, length))

  @jax.jit
  def forward(state, tokens, positions):
    with sharding.use_rules(run.mesh, run.rules):
      logits, _ = nnx.merge(graphdef, state)(tokens, positions)
    return logits

  with run.mesh:
    tokens_sharded = sharding.shard_batch(tokens, run.mesh, ("batch", "length"))
    positions_sharded = sharding.shard_batch(np.ascontiguousarray(positions), run.mesh, ("batch", "length"))
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
    "mesh": dict(run.mesh.shape),
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
  if run.is_coordinator:
    with open(os.path.join(workdir, "forward.json"), "w") as f:
      json.dump(report, f, indent=2)
  print(
    f"[forward] {report['model']}: {report['params']:,} params on mesh {report['mesh']} ({report['backend']}); "
    f"logits {report['logits_shape']}, next-token NLL {mean_nll:.3f} (uniform {report['uniform_nll']:.3f}); "
    f"compile {compile_seconds:.2f}s, forward {run_seconds * 1e3:.1f}ms"
  )
