"""The `plan` stage: will this config fit on its TPU slice? Answered on any machine, before paying for one.

libtpu compiles for a TPU topology without a TPU attached (`jax.experimental.topologies`). The stage
builds the configured mesh over the topology's devices, AOT-compiles the real SFT train step and the real
generation loop (prefill + decode with the Pallas sampling kernel) on abstract, sharded inputs, and
reports per-chip memory: parameters, optimizer state and KV cache from their shardings, activations and
scratch from the compiler (`memory_analysis`), against the chip's HBM, and the bytes each program moves in
collectives. Generation is compiled for the worst case the configured stages allow: the largest batch, the
widest prompt and the longest completion of their sampling sections, once per decode weight layout
(`mesh.decode_weights`: the training layout, or a tensor-parallel copy replicated over data/fsdp); the chosen
layout decides the fit, the other is reported beside it (`decode_weights` in `plan.json`). A program the
compiler cannot fit is reported as "does not fit: X GiB of Y" in `plan.json` and the stage fails after
writing it.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssd_jax import config as config_lib
from ssd_jax import sharding
from ssd_jax.collective_bytes import collective_bytes
from ssd_jax.compile_oom import DoesNotFitError, parse_compile_oom
from ssd_jax.model import KVCache, sharded_init
from ssd_jax.model.expert_dispatch import moe_layout
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
  collective_bytes: int
  resident: int = 0  # Held outside the program meanwhile (the training weights, beside a decode copy).

  @property
  def peak(self) -> int:
    # Donated inputs alias their outputs, so they are counted once.
    return self.arguments + self.outputs - self.aliased + self.temporaries + self.resident


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
  moved = sum(collective_bytes(compiled.as_text()).values())
  return StepMemory(
    name, m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes, m.temp_size_in_bytes, moved
  )


@dataclasses.dataclass(frozen=True)
class GenerationShape:
  """The generation program the plan compiles: rows, prompt width, new tokens."""

  batch: int
  prompt_len: int
  max_new_tokens: int


def generation_shape(config: ml_collections.ConfigDict, max_positions: int) -> GenerationShape:
  """The largest batch, widest prompt and longest completion among the sampling sections the stages use.

  A plan-only run considers every sampling section. Prompts are `plan.prompt_len` wide (self-distillation
  rollouts: `self_distill.max_prompt_len`), cut so prompt + completion fits the model's positions.
  """
  names = set(config_lib.stage_names(config)) - {"plan"}
  sections = []
  if not names or "synthesize" in names:
    sections.append((config.sampling, config.plan.prompt_len))
  if not names or "eval" in names:
    sections.append((config.eval_sampling, config.plan.prompt_len))
  if not names or "self_distill" in names:
    sections.append((config.self_distill.rollout, config.self_distill.max_prompt_len))
  if not sections:
    sections.append((config.sampling, config.plan.prompt_len))
  batch = max(section.batch_size for section, _ in sections)
  new = min(max(section.max_new_tokens for section, _ in sections), max_positions - 1)
  width = min(max(width for _, width in sections), max_positions - new)
  return GenerationShape(batch, width, new)


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


def compile_generation(
  config: ml_collections.ConfigDict,
  ctx: RunContext,
  mesh: Mesh,
  graphdef,
  params,
  shape: GenerationShape,
  decode_weights: str = "train",
):
  """AOT-compiles the generation loop (Pallas sampling kernel) for `shape` on abstract inputs.

  Args:
    params: the weights in their training layout.
    decode_weights: the layout generation holds them in (`sharding.DECODE_WEIGHT_LAYOUTS`); a 'tensor' copy
      is an argument of the program while the training weights stay resident beside it.

  Returns:
    (StepMemory, KV-cache bytes per chip, weight bytes per chip in the decode layout). The cache lives
    inside the program (its temporaries), so it is part of the program's peak, not an addition to it.
    Collectives count each decode loop's body once: prefill plus about one decoding step.
  """
  resident = 0
  if decode_weights != "train":
    resident = per_chip_bytes(params)
    _, params = sharded_init.abstract_state(
      ctx.model_cfg, mesh, sharding.decode_weight_rules(ctx.rules, decode_weights)
    )
  s = config.sampling
  batch, width = shape.batch, shape.prompt_len
  spec = lambda *names: NamedSharding(mesh, sharding.logical_to_spec(names, ctx.rules))
  int_batch = lambda dims, *names: jax.ShapeDtypeStruct(dims, jnp.int32, sharding=spec(*names))
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch))
  keys = jax.ShapeDtypeStruct(keys.shape, keys.dtype, sharding=spec("batch"))
  rows = SamplingParams(temperature=max(s.temperature, 1e-3), top_k=s.top_k, top_p=s.top_p, min_p=s.min_p).rows(batch)
  rows = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=spec("batch")), rows)
  fn = functools.partial(
    generate_batch, graphdef, max_new_tokens=shape.max_new_tokens, mesh=mesh, rules=ctx.rules, impl="pallas"
  )
  compiled = (
    jax.jit(fn)
    .lower(params, int_batch((batch, width), "batch", "length"), int_batch((batch,), "batch"), keys, rows)
    .compile()
  )
  cache = jax.eval_shape(lambda: KVCache.init(ctx.model_cfg, batch, width + shape.max_new_tokens))
  cache = _abstract(cache, KVCache.shardings(mesh, ctx.rules))
  memory = dataclasses.replace(_memory("generate", compiled), resident=resident)
  return memory, per_chip_bytes(cache), per_chip_bytes(params)


def _compiled_or_oom(compile_fn):
  """`compile_fn()`, or (None, the out-of-memory sentence) when the compiler says the program cannot fit."""
  try:
    return compile_fn(), None
  except Exception as e:  # pylint: disable=broad-except
    oom = parse_compile_oom(e)
    if oom is None:
      raise
    return None, oom.message()


def run(ctx: RunContext) -> None:
  """Compiles for `config.mesh.topology` and writes `plan.json`; raises if a program does not fit."""
  config = ctx.config
  topology = config.mesh.topology
  if not topology:
    raise config_lib.ConfigError("field 'mesh.topology' is empty: the plan stage needs a TPU topology, e.g. 'v5e:2x2'")
  devices = topology_devices(topology)  # Describing the slice is cheap; compiling comes after every check.
  mesh_shape = config_lib.mesh_shape(config, len(devices))
  try:
    sharding.validate_mesh_for_model(mesh_shape, ctx.model_cfg, ctx.rules)
  except ValueError as e:
    raise config_lib.ConfigError(f"field 'mesh' = {mesh_shape} does not fit the model on {topology}: {e}") from e
  mesh = sharding.make_mesh(mesh_shape, devices=devices)
  kind = devices[0].device_kind
  hbm = int((config.plan.hbm_gib or HBM_GIB.get(kind, 0)) * GIB)
  graphdef, params = sharded_init.abstract_state(ctx.model_cfg, mesh, ctx.rules)
  param_bytes = per_chip_bytes(params)
  train_result, train_oom = _compiled_or_oom(lambda: compile_train_step(config, ctx, mesh, graphdef, params))
  shape = generation_shape(config, ctx.model_cfg.max_position_embeddings)
  chosen = config.mesh.decode_weights
  layouts = {}
  for layout in (chosen, *(x for x in sharding.DECODE_WEIGHT_LAYOUTS if x != chosen)):
    layouts[layout] = _compiled_or_oom(
      lambda layout=layout: compile_generation(config, ctx, mesh, graphdef, params, shape, layout)
    )
  generate_result, generate_oom = layouts[chosen]
  per_chip = {"parameters": param_bytes / GIB}
  programs = {}
  if train_result is not None:
    train, opt_bytes = train_result
    per_chip["optimizer_state"] = opt_bytes / GIB
    per_chip["train_activations_and_scratch"] = train.temporaries / GIB
    programs["sft_step"] = train
  if generate_result is not None:
    generate, cache_bytes, _ = generate_result
    per_chip["generate_kv_cache"] = cache_bytes / GIB
    per_chip["generate_other_scratch"] = max(0, generate.temporaries - cache_bytes) / GIB
    programs["generate"] = generate
  report = {
    "topology": topology,
    "device_kind": kind,
    "chips": len(devices),
    "mesh": mesh_shape,
    "hbm_per_chip_gib": hbm / GIB,
    "model_params": ctx.model_cfg.num_params,
    "generation": dataclasses.asdict(shape),
    "moe_layout": moe_layout(ctx.model_cfg, mesh_shape, ctx.rules, "tpu"),
    "decode_weights": {"chosen": chosen, "layouts": _layout_report(layouts, hbm)},
    "per_chip_gib": per_chip,
    "programs": {
      name: {
        **dataclasses.asdict(m),
        "peak_gib": m.peak / GIB,
        "collective_mib": m.collective_bytes / 2**20,
        "fits": hbm == 0 or m.peak <= hbm,
      }
      for name, m in programs.items()
    },
  }
  for name, oom in (("sft_step", train_oom), ("generate", generate_oom)):
    if oom is not None:
      report["programs"][name] = {"fits": False, "error": oom}
  fits = all(p["fits"] for p in report["programs"].values())
  report["fits"] = fits
  if ctx.is_coordinator:
    with open(ctx.layout.plan_report, "w") as f:
      json.dump(report, f, indent=2)
  print(
    f"[plan] {topology} ({len(devices)} x {kind}, {hbm / GIB:.0f} GiB HBM each), mesh {mesh_shape}, "
    f"{ctx.model_cfg.num_params / 1e9:.2f}B params"
  )
  for layout, entry in report["decode_weights"]["layouts"].items():
    mark = " (chosen: mesh.decode_weights)" if layout == chosen else ""
    if "error" in entry:
      print(f"[plan]   decode weights {layout!r}{mark}: {entry['error']}")
    else:
      print(
        f"[plan]   decode weights {layout!r}{mark}: generation peak {entry['peak_gib']:.3f} GiB/chip, "
        f"collectives {entry['collective_mib']:.1f} MiB per call"
      )
  if report["moe_layout"]:
    print(f"[plan]   experts (training and decode): {report['moe_layout']}")
  for key, value in report["per_chip_gib"].items():
    print(f"[plan]   {key:<34s} {value:8.3f} GiB/chip")
  for name, p in report["programs"].items():
    if "error" in p:
      print(f"[plan]   {name:<12s} {p['error']}")
    else:
      print(
        f"[plan]   {name:<12s} peak {p['peak_gib']:8.3f} GiB/chip, collectives {p['collective_mib']:.1f} MiB "
        f"-> {_verdict(p, hbm)}"
      )
  if not fits:
    failed = "; ".join(f"{name} {_verdict(p, hbm)}" for name, p in report["programs"].items() if not p["fits"])
    raise DoesNotFitError(f"config does not fit on {topology}: {failed} (see {ctx.layout.plan_report})")


def _layout_report(layouts: dict, hbm: int) -> dict:
  """Generation under each decode weight layout: peak, collectives, the decode copy's size, or the OOM."""
  report = {}
  for layout, (result, oom) in layouts.items():
    if result is None:
      report[layout] = {"fits": False, "error": oom}
      continue
    memory, _, weight_bytes = result
    report[layout] = {
      "peak_gib": memory.peak / GIB,
      "collective_mib": memory.collective_bytes / 2**20,
      "weight_copy_gib": (weight_bytes if memory.resident else 0) / GIB,
      "fits": hbm == 0 or memory.peak <= hbm,
    }
  return report


def _verdict(program: dict, hbm: int) -> str:
  if "error" in program:
    return program["error"]
  return "fits" if program["fits"] else f"does not fit: {program['peak_gib']:.2f} GiB of {hbm / GIB:.2f} GiB"
