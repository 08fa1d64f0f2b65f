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
import json

from ssd_jax import config as config_lib
from ssd_jax import sharding
from ssd_jax.compile_oom import DoesNotFitError
from ssd_jax.model import sharded_init
from ssd_jax.model.expert_dispatch import moe_layout
from ssd_jax.pipeline import plan_programs
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.plan_programs import GIB, StepMemory


def run(ctx: RunContext) -> None:
  """Compiles for `config.mesh.topology` and writes `plan.json`; raises if a program does not fit."""
  config = ctx.config
  topology = config.mesh.topology
  if not topology:
    raise config_lib.ConfigError("field 'mesh.topology' is empty: the plan stage needs a TPU topology, e.g. 'v5e:2x2'")
  # Describing the slice is cheap; compiling comes after every check.
  devices = plan_programs.topology_devices(topology)
  mesh_shape = config_lib.mesh_shape(config, len(devices))
  try:
    sharding.validate_mesh_for_model(mesh_shape, ctx.model_cfg, ctx.rules)
  except ValueError as e:
    raise config_lib.ConfigError(f"field 'mesh' = {mesh_shape} does not fit the model on {topology}: {e}") from e
  mesh = sharding.make_mesh(mesh_shape, devices=devices)
  kind = devices[0].device_kind
  hbm = int((config.plan.hbm_gib or plan_programs.HBM_GIB.get(kind, 0)) * GIB)
  graphdef, params = sharded_init.abstract_state(ctx.model_cfg, mesh, ctx.rules)
  param_bytes = plan_programs.per_chip_bytes(params)
  train_result, train_oom = plan_programs.compiled_or_oom(
    lambda: plan_programs.compile_train_step(config, ctx, mesh, graphdef, params)
  )
  shape = plan_programs.generation_shape(config, ctx.model_cfg.max_position_embeddings)
  chosen = config.mesh.decode_weights
  layouts = {}
  for layout in (chosen, *(x for x in sharding.DECODE_WEIGHT_LAYOUTS if x != chosen)):
    layouts[layout] = plan_programs.compiled_or_oom(
      lambda layout=layout: plan_programs.compile_generation(config, ctx, mesh, graphdef, params, shape, layout)
    )
  generate_result, generate_oom = layouts[chosen]
  per_chip = {"parameters": param_bytes / GIB}
  train = generate = None
  if train_result is not None:
    train, opt_bytes = train_result
    per_chip["optimizer_state"] = opt_bytes / GIB
    per_chip["train_activations_and_scratch"] = train.temporaries / GIB
  if generate_result is not None:
    generate, cache_bytes, _ = generate_result
    per_chip["generate_kv_cache"] = cache_bytes / GIB
    per_chip["generate_other_scratch"] = max(0, generate.temporaries - cache_bytes) / GIB
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
      "sft_step": _program_entry(train, train_oom, hbm),
      "generate": _program_entry(generate, generate_oom, hbm),
    },
  }
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
        f"collectives {entry['collective_mib']:.1f} MiB per call, "
        f"Pallas kernels: {', '.join(entry['kernels']) or 'none'}"
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


def _program_entry(memory: StepMemory | None, oom: str | None, hbm: int) -> dict:
  """A compiled program's plan.json entry (its bytes, peak, collectives, fit), or its out-of-memory sentence."""
  if memory is None:
    return {"fits": False, "error": oom}
  return {
    **dataclasses.asdict(memory),
    "peak_gib": memory.peak / GIB,
    "collective_mib": memory.collective_bytes / 2**20,
    "fits": hbm == 0 or memory.peak <= hbm,
  }


def _layout_report(layouts: dict, hbm: int) -> dict:
  """Generation under each decode weight layout: its program entry plus the decode copy's size."""
  report = {}
  for layout, (result, oom) in layouts.items():
    memory, _, weight_bytes = result or (None, 0, 0)
    report[layout] = _program_entry(memory, oom, hbm)
    if memory is not None:
      report[layout]["weight_copy_gib"] = (weight_bytes if memory.resident else 0) / GIB
  return report


def _verdict(program: dict, hbm: int) -> str:
  if "error" in program:
    return program["error"]
  return "fits" if program["fits"] else f"does not fit: {program['peak_gib']:.2f} GiB of {hbm / GIB:.2f} GiB"
