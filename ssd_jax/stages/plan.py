"""The `plan` stage: will this config fit on its TPU slice? Answered on any machine, before paying for one.

libtpu compiles for a TPU topology without a TPU attached (`jax.experimental.topologies`). The stage
builds the configured mesh over the topology's devices, AOT-compiles the real SFT train step and the real
generation loop (prefill + decode with the Pallas sampling kernel) on abstract, sharded inputs, and
reports per-chip memory: parameters, optimizer state and KV cache from their shardings, activations and
scratch from the compiler (`memory_analysis`), against the chip's HBM.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssd_jax import config as config_lib
from ssd_jax import sharding
from ssd_jax.model import KVCache, sharded_init
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.training import make_optimizer_from
from ssd_jax.sampling.decode_loop import generate_batch
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.train import sft_step, train_step
from ssd_jax.train.train_state import TrainState, opt_state_shardings

GIB = 1024**3

# HBM per chip by `device_kind` (public TPU specs).
HBM_GIB = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v6 lite": 32}


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """Per-chip bytes of one compiled program."""

  name: str
  arguments: int
  outputs: int
  aliased: int
  temporaries: int

  @property
  def peak(self) -> int:
    # Donated inputs alias their outputs, so they are counted once.
    return self.arguments + self.outputs - self.aliased + self.temporaries


def topology_devices(topology: str) -> list:
  """The devices of a TPU topology such as 'v5e:2x2' or 'v5p:2x2x4', compiled for by libtpu on any host."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

  try:
    return list(topologies.get_topology_desc(topology, "tpu").devices)
  except Exception as e:  # libtpu missing or busy, or a name it does not know.
    if "lock" in str(e).lower() or "in use" in str(e).lower():
      raise config_lib.ConfigError(
        f"field 'mesh.topology' = {topology!r}: libtpu is held by another process on this machine ({e}); wait for "
        "it to finish, or set ALLOW_MULTIPLE_LIBTPU_LOAD=1 when that process only compiles too"
      ) from e
    raise config_lib.ConfigError(
      f"field 'mesh.topology' = {topology!r}: cannot describe this TPU topology ({e}); "
      "install the tpu extra (pip install -e '.[tpu]') and use names like 'v5e:2x2' or 'v5p:2x2x4'"
    ) from e


def per_chip_bytes(tree) -> int:
  """Bytes one device holds of a pytree of sharded ShapeDtypeStructs (the largest shard)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += int(np.prod(shard)) * jnp.dtype(leaf.dtype).itemsize
  return total


def _abstract(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _memory(name: str, compiled) -> StepMemory:
  m = compiled.memory_analysis()
  return StepMemory(name, m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes, m.temp_size_in_bytes)


def compile_train_step(config: ml_collections.ConfigDict, ctx: RunContext, mesh: Mesh, graphdef, params):
  """AOT-compiles the SFT step on abstract inputs; returns (StepMemory, optimizer-state bytes per chip)."""
  optimizer = make_optimizer_from(config.sft)
  abstract_opt = jax.eval_shape(optimizer.tx.init, params)
  opt_state = _abstract(abstract_opt, opt_state_shardings(optimizer, params))
  replicated = NamedSharding(mesh, PartitionSpec())
  state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated), params=params, opt_state=opt_state)
  batch_sharding = NamedSharding(mesh, sharding.logical_to_spec(train_step.BATCH_AXES, ctx.rules))
  shape = (config.sft.global_batch_size, config.sft.seq_len)
  batch = {k: jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding) for k in sft_step.BATCH_KEYS}
  step = sft_step.make_sft_step(graphdef, optimizer, chunk_size=config.sft.loss_chunk_size, mesh=mesh, rules=ctx.rules)
  compiled = step.jit_for(state).lower(state, batch, None).compile()
  return _memory("sft_step", compiled), per_chip_bytes(opt_state)


def compile_generation(config: ml_collections.ConfigDict, ctx: RunContext, mesh: Mesh, graphdef, params):
  """AOT-compiles the generation loop (Pallas sampling kernel) on abstract inputs.

  Returns:
    (StepMemory, KV-cache bytes per chip).
  """
  s = config.sampling
  batch, width = s.batch_size, config.plan.prompt_len
  spec = lambda *names: NamedSharding(mesh, sharding.logical_to_spec(names, ctx.rules))
  int_batch = lambda shape, *names: jax.ShapeDtypeStruct(shape, jnp.int32, sharding=spec(*names))
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch))
  keys = jax.ShapeDtypeStruct(keys.shape, keys.dtype, sharding=spec("batch"))
  rows = SamplingParams(temperature=max(s.temperature, 1e-3), top_k=s.top_k, top_p=s.top_p, min_p=s.min_p).rows(batch)
  rows = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=spec("batch")), rows)
  fn = functools.partial(
    generate_batch, graphdef, max_new_tokens=s.max_new_tokens, mesh=mesh, rules=ctx.rules, impl="pallas"
  )
  compiled = (
    jax.jit(fn)
    .lower(params, int_batch((batch, width), "batch", "length"), int_batch((batch,), "batch"), keys, rows)
    .compile()
  )
  cache = jax.eval_shape(lambda: KVCache.init(ctx.model_cfg, batch, width + s.max_new_tokens))
  cache = _abstract(cache, KVCache.shardings(mesh, ctx.rules))
  return _memory("generate", compiled), per_chip_bytes(cache)


def run(ctx: RunContext) -> None:
  """Compiles for `config.mesh.topology` and writes `plan.json`; raises if a program does not fit."""
  config, workdir = ctx.config, ctx.layout.workdir
  topology = config.mesh.topology
  if not topology:
    raise config_lib.ConfigError("field 'mesh.topology' is empty: the plan stage needs a TPU topology, e.g. 'v5e:2x2'")
  devices = topology_devices(topology)
  mesh_shape = config_lib.mesh_shape(config, len(devices))
  sharding.validate_mesh_for_model(mesh_shape, ctx.model_cfg, ctx.rules)
  mesh = sharding.make_mesh(mesh_shape, devices=devices)
  kind = devices[0].device_kind
  hbm = int((config.plan.hbm_gib or HBM_GIB.get(kind, 0)) * GIB)
  graphdef, params = sharded_init.abstract_state(ctx.model_cfg, mesh, ctx.rules)
  param_bytes = per_chip_bytes(params)
  train, opt_bytes = compile_train_step(config, ctx, mesh, graphdef, params)
  generate, cache_bytes = compile_generation(config, ctx, mesh, graphdef, params)
  report = {
    "topology": topology,
    "device_kind": kind,
    "chips": len(devices),
    "mesh": mesh_shape,
    "hbm_per_chip_gib": hbm / GIB,
    "model_params": ctx.model_cfg.num_params,
    "per_chip_gib": {
      "parameters": param_bytes / GIB,
      "optimizer_state": opt_bytes / GIB,
      "kv_cache": cache_bytes / GIB,
      "train_activations_and_scratch": train.temporaries / GIB,
      "generate_activations_and_scratch": generate.temporaries / GIB,
    },
    "programs": {
      m.name: {**dataclasses.asdict(m), "peak_gib": m.peak / GIB, "fits": hbm == 0 or m.peak <= hbm}
      for m in (train, generate)
    },
  }
  fits = all(p["fits"] for p in report["programs"].values())
  report["fits"] = fits
  if ctx.is_coordinator:
    with open(os.path.join(workdir, "plan.json"), "w") as f:
      json.dump(report, f, indent=2)
  print(
    f"[plan] {topology} ({len(devices)} x {kind}, {hbm / GIB:.0f} GiB HBM each), mesh {mesh_shape}, "
    f"{ctx.model_cfg.num_params / 1e9:.2f}B params"
  )
  for key, value in report["per_chip_gib"].items():
    print(f"[plan]   {key:<34s} {value:8.3f} GiB/chip")
  for name, p in report["programs"].items():
    print(f"[plan]   {name:<12s} peak {p['peak_gib']:8.3f} GiB/chip -> {'fits' if p['fits'] else 'DOES NOT FIT'}")
  if not fits:
    raise RuntimeError(f"config does not fit on {topology}: see {os.path.join(workdir, 'plan.json')}")
