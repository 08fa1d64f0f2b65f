"""The programs the plan stage compiles for a TPU slice, and how much memory and traffic each needs per chip.

libtpu compiles for a TPU topology without a TPU attached (`jax.experimental.topologies`): the real SFT train
step and the real generation loop (prefill + decode with the Pallas sampling kernel) are AOT-compiled on
abstract, sharded inputs; `memory_analysis` gives arguments, outputs and scratch, `collective_bytes` the
traffic. Out-of-memory compile errors come back as one sentence (`compiled_or_oom`).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssd_jax import config as config_lib
from ssd_jax import sharding
from ssd_jax.collective_bytes import collective_bytes
from ssd_jax.compile_oom import parse_compile_oom
from ssd_jax.model import KVCache, sharded_init
from ssd_jax.model.kv_cache import cache_slots
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.training import make_optimizer_from
from ssd_jax.sampling.decode_loop import generate_batch
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.train import sft_step, train_step
from ssd_jax.train.train_state import TrainState, opt_state_shardings

GIB = 1024**3

# HBM per chip by `device_kind` (public TPU specs).
HBM_GIB = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v6 lite": 32}

# An instruction's name without its numeric suffix: '%ragged_decode_attention.1 = ...' -> ragged_decode_attention.
_INSTRUCTION = re.compile(r"\s*(?:ROOT\s+)?%([A-Za-z_][\w\-]*?)(?:\.\d+)*\s+=")


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
  kernels: tuple[str, ...] = ()  # Pallas TPU kernels in the program (e.g. 'ragged_decode_attention').

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


def pallas_kernels(hlo: str) -> tuple[str, ...]:
  """Names of the Pallas TPU kernels (tpu_custom_call instructions) in an HLO module's text."""
  names = set()
  for line in hlo.splitlines():
    if 'custom_call_target="tpu_custom_call"' in line:
      match = _INSTRUCTION.match(line)
      if match:
        names.add(match.group(1))
  return tuple(sorted(names))


def _memory(name: str, compiled) -> StepMemory:
  m = compiled.memory_analysis()
  text = compiled.as_text()
  return StepMemory(
    name,
    m.argument_size_in_bytes,
    m.output_size_in_bytes,
    m.alias_size_in_bytes,
    m.temp_size_in_bytes,
    sum(collective_bytes(text).values()),
    kernels=pallas_kernels(text),
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
  resident, weight_rules = 0, sharding.decode_weight_rules(ctx.rules, decode_weights)
  if decode_weights != "train":
    resident = per_chip_bytes(params)
    _, params = sharded_init.abstract_state(ctx.model_cfg, mesh, weight_rules)
  s = config.sampling
  batch, width = shape.batch, shape.prompt_len
  spec = lambda *names: NamedSharding(mesh, sharding.logical_to_spec(names, ctx.rules))
  int_batch = lambda dims, *names: jax.ShapeDtypeStruct(dims, jnp.int32, sharding=spec(*names))
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch))
  keys = jax.ShapeDtypeStruct(keys.shape, keys.dtype, sharding=spec("batch"))
  rows = SamplingParams(temperature=max(s.temperature, 1e-3), top_k=s.top_k, top_p=s.top_p, min_p=s.min_p).rows(batch)
  rows = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=spec("batch")), rows)
  fn = functools.partial(
    generate_batch,
    graphdef,
    max_new_tokens=shape.max_new_tokens,
    mesh=mesh,
    rules=ctx.rules,
    weight_rules=weight_rules,
    impl="pallas",
  )
  compiled = (
    jax.jit(fn)
    .lower(params, int_batch((batch, width), "batch", "length"), int_batch((batch,), "batch"), keys, rows)
    .compile()
  )
  cache = jax.eval_shape(lambda: KVCache.init(ctx.model_cfg, batch, cache_slots(width + shape.max_new_tokens)))
  cache = _abstract(cache, KVCache.shardings(mesh, ctx.rules))
  memory = dataclasses.replace(_memory("generate", compiled), resident=resident)
  return memory, per_chip_bytes(cache), per_chip_bytes(params)


def compiled_or_oom(compile_fn):
  """`compile_fn()`, or (None, the out-of-memory sentence) when the compiler says the program cannot fit."""
  try:
    return compile_fn(), None
  except Exception as e:  # pylint: disable=broad-except
    oom = parse_compile_oom(e)
    if oom is None:
      raise
    return None, oom.message()
