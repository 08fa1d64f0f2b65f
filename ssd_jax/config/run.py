"""The run sections: seed, stages, model, mesh, tokenizer, and the `forward` and `plan` stages.

Also the checks that depend on which stages run (a stage that reads base weights needs `model.hf_dir` or the
`pretrain` stage; a stage that reads problems needs their file), made before any weight is read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import ml_collections

from ssd_jax import sharding
from ssd_jax.config.schema import Check, ConfigError, comma_list, get, int_list_ok
from ssd_jax.config.self_distill import ema_precision_errors, rollouts_per_update
from ssd_jax.config.ssd import evaluated_training_stages, problems_errors
from ssd_jax.model.config import SHAPE_FIELDS

STAGES = ("forward", "pretrain", "synthesize", "sft", "self_distill", "eval", "report", "plan", "toy")
MESH_AXES = sharding.MESH_AXES
DTYPES = ("float32", "bfloat16", "float16")
# Shape changes to a preset (with the pretrain stage, the model's vocab_size must be pretrain.tokenizer_vocab_size;
# the run's input checks compare them, `pipeline.runner`).
MODEL_OVERRIDES = SHAPE_FIELDS
# The decoding section each sampling stage draws with.
STAGE_DECODING = {"synthesize": "sampling", "self_distill": "self_distill.rollout", "eval": "eval_sampling"}
# Stages that read the base model (its weights and its tokenizer), and the sections whose problems each stage reads.
MODEL_STAGES = ("synthesize", "sft", "self_distill", "eval")
_READS_PROBLEMS = {
  "synthesize": "synthesize.problems",
  "self_distill": "self_distill.problems",
  "eval": "eval.problems",
}
# The weights of a Hugging Face directory: one file, or an index of shards.
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def add_sections(c: ml_collections.ConfigDict) -> None:
  c.seed = 0
  c.stages = "forward"  # Comma-separated, run in order; see STAGES.

  c.model = ml_collections.ConfigDict()
  c.model.preset = "tiny_qwen3"  # A name from ssd_jax.model.presets.
  c.model.hf_dir = ""  # A Hugging Face checkpoint directory; when set, its config.json wins over preset.
  c.model.dtype = "bfloat16"  # Activations.
  c.model.param_dtype = "bfloat16"
  c.model.remat = "none"
  c.model.attention = "auto"  # 'xla', 'splash' (Pallas TPU flash attention) or 'auto' (splash on TPU meshes).
  c.model.scan_layers = False  # One scanned block instead of num_layers unrolled ones: faster compiles, less memory.
  # Weight of an MoE model's load-balancing loss in training; -1 keeps the preset's, or the checkpoint's (its
  # router_aux_loss_coef where its config.json sets output_router_logits, as transformers trains it; else 0).
  c.model.router_aux_loss_coef = -1.0
  # Shape changes to a preset for a model trained from scratch; 0 keeps the preset's value.
  c.model.overrides = ml_collections.ConfigDict({name: 0 for name in MODEL_OVERRIDES})

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 absorbs the devices the other axes leave.
  c.mesh.fsdp = 1
  c.mesh.expert = 1  # Expert parallelism (MoE models); it also splits the batch.
  c.mesh.tensor = 1
  # How generation holds the weights: 'train' (the training layout) or 'tensor' (a copy sharded over 'tensor'
  # only, replicated over data/fsdp, made once per generation phase: no weight gathers per decode step).
  c.mesh.decode_weights = "train"
  c.mesh.topology = ""  # e.g. "v5e:2x2": the TPU slice the plan stage compiles for.

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ""  # Defaults to model.hf_dir.

  c.plan = ml_collections.ConfigDict()
  c.plan.prompt_len = 1024  # Prompt width the generation program is compiled for.
  c.plan.hbm_gib = 0.0  # HBM per chip; 0 takes the chip's published size.

  c.forward = ml_collections.ConfigDict()
  c.forward.batch_size = 2
  c.forward.seq_len = 16


def checks() -> list[Check]:
  return [
    Check("seed", lambda v: 0 <= v < 2**32, "a seed in [0, 2**32)"),
    Check(
      "stages",
      lambda v: bool(comma_list(v)) and all(s in STAGES for s in comma_list(v)),
      f"at least one stage, comma-separated, from {STAGES}",
    ),
    Check("model.dtype", lambda v: v in DTYPES, "float32, bfloat16 or float16"),
    Check("model.param_dtype", lambda v: v in DTYPES, "float32, bfloat16 or float16"),
    Check("model.attention", lambda v: v in ("auto", "xla", "splash"), "'auto', 'xla' or 'splash'"),
    Check("model.router_aux_loss_coef", lambda v: v == -1 or 0 <= v < math.inf, "a weight >= 0, or -1"),
    *[
      Check(f"model.overrides.{name}", lambda v: v >= 0, "a size >= 0 (0 keeps the preset's)")
      for name in MODEL_OVERRIDES
    ],
    *[Check(f"mesh.{axis}", lambda v: v == -1 or v >= 1, "a positive axis size or -1") for axis in MESH_AXES],
    Check(
      "mesh.decode_weights", lambda v: v in sharding.DECODE_WEIGHT_LAYOUTS, f"one of {sharding.DECODE_WEIGHT_LAYOUTS}"
    ),
    Check(
      "mesh.topology", lambda v: not v or topology_chips(v) > 0, "'' or a TPU topology like 'v5e:2x2', 'v5p:2x2x4'"
    ),
    Check("plan.prompt_len", lambda v: v >= 1, "a prompt width >= 1"),
    Check("plan.hbm_gib", lambda v: 0 <= v < math.inf, "finite GiB >= 0 (0 means the chip's own)"),
    Check("forward.batch_size", lambda v: v >= 1, "a batch size >= 1"),
    Check("forward.seq_len", lambda v: v >= 1, "a sequence length >= 1"),
  ]


def stage_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return comma_list(config.stages)


def in_stage_order(names: Iterable[str]) -> list[str]:
  """Stage `names` sorted into pipeline order (that of `STAGES`)."""
  return sorted(names, key=STAGES.index)


def decoding_sections(config: ml_collections.ConfigDict, names: tuple[str, ...]) -> list[str]:
  """The decoding sections stages `names` sample with, in stage order (`STAGE_DECODING`, and `eval_sampling`
  for self_distill's held-out curve)."""
  sections = [STAGE_DECODING[name] for name in names if name in STAGE_DECODING]
  if "self_distill" in names and config.self_distill.eval_every > 0 and "eval_sampling" not in sections:
    sections.append("eval_sampling")
  return sections


def topology_chips(topology: str) -> int:
  """Chips of a TPU topology name, 'v5e:2x2' -> 4, 'v5p:2x2x4' -> 16 (0 for a name of another form)."""
  _, sep, dims = topology.partition(":")
  sizes = dims.split("x")
  if not sep or not all(d.isdigit() and int(d) > 0 for d in sizes):
    return 0
  chips = 1
  for d in sizes:
    chips *= int(d)
  return chips


def planning_device_count(config: ml_collections.ConfigDict) -> int | None:
  """For a run whose only stage is `plan`: the chips of `mesh.topology` (its mesh is for that slice, not for
  this machine's devices). None otherwise."""
  if stage_names(config) == ("plan",) and config.mesh.topology:
    return topology_chips(config.mesh.topology) or None
  return None


def mesh_shape(config: ml_collections.ConfigDict, device_count: int) -> dict[str, int]:
  """Resolves the -1 axis of `config.mesh` against `device_count`; raises ConfigError naming the field."""
  try:
    return sharding.resolve_mesh_shape({axis: int(config.mesh[axis]) for axis in MESH_AXES}, device_count)
  except ValueError as e:
    raise ConfigError(f"field 'mesh': {e}") from e


def indivisible_batch_errors(batches: dict[str, int], mesh: dict[str, int]) -> list[str]:
  """`batches` (what names a batch -> its rows) that do not split evenly over the batch shards of `mesh`, the
  mesh axes of 'batch' (data x fsdp x expert)."""
  axes = sharding.as_axes(sharding.logical_to_spec(("batch",), sharding.DEFAULT_RULES)[0])
  shards = math.prod(mesh[axis] for axis in axes)
  return [
    f"{what} = {rows} rows do not split over the {shards} batch shards (data x fsdp x expert) of mesh {mesh}: "
    f"make it a multiple of {shards}, or change the mesh"
    for what, rows in batches.items()
    if rows % shards
  ]


def batch_errors(config: ml_collections.ConfigDict, device_count: int) -> list[str]:
  """The batches of the configured stages that the mesh over `device_count` devices cannot split.

  The sampler's batches (it fills a short last one with idle rows), a training step's global batch (its
  micro-batches of grad_accum_steps need not split) and the forward stage's batch are each placed split
  over the batch shards. The plan stage compiles for its own slice (`pipeline.runner` checks it).

  Raises:
    ConfigError: the mesh does not resolve for `device_count`.
  """
  names, sd = stage_names(config), config.self_distill
  batches = {}
  if "forward" in names:
    batches["field 'forward.batch_size'"] = config.forward.batch_size
  for stage in ("pretrain", "sft"):
    if stage in names:
      batches[f"field '{stage}.global_batch_size'"] = config[stage].global_batch_size
  for section in decoding_sections(config, names):
    batches[f"field '{section}.batch_size'"] = get(config, section).batch_size
  if "self_distill" in names:
    fields, values, rows = rollouts_per_update(sd)
    batches[f"{fields} (the rollouts of an update) = {values}"] = rows
  return indivisible_batch_errors(batches, mesh_shape(config, device_count))


def run_errors(config: ml_collections.ConfigDict, *, base_in_workdir: bool = False) -> list[str]:
  """What the configured stages need that the config does not give (see `config.check_run`)."""
  names = stage_names(config)
  errors = []
  repeated = sorted({name for name in names if names.count(name) > 1}, key=names.index)
  if repeated:
    errors.append(f"field 'stages' = {config.stages!r} lists {repeated} more than once: list each stage once")
  weight_stages = [n for n in names if n in MODEL_STAGES]
  hf_dir = config.model.hf_dir
  if weight_stages and "pretrain" not in names and (hf_dir or not base_in_workdir):  # Else the workdir's base.
    if not hf_dir:
      errors.append(
        f"field 'model.hf_dir' is empty, but stages {weight_stages} need the base model's weights: pass "
        "--config.model.hf_dir=/path/to/hf_checkpoint (a directory with config.json and *.safetensors)"
      )
    elif not os.path.isfile(os.path.join(hf_dir, "config.json")):
      errors.append(f"field 'model.hf_dir' = {hf_dir!r} holds no config.json (is the path right?)")
    elif not any(os.path.isfile(os.path.join(hf_dir, name)) for name in _WEIGHT_FILES):
      errors.append(f"field 'model.hf_dir' = {hf_dir!r} holds no weights: neither {' nor '.join(_WEIGHT_FILES)}")
  trained = [n for n in names if n in ("pretrain", "sft", "self_distill")]
  if trained and config.model.param_dtype == "float16":
    # Adam's epsilon (1e-8) is 0 in float16, so a parameter with a zero gradient gets 0 / 0 = NaN on the first update.
    errors.append(
      f"field 'model.param_dtype' = 'float16' cannot be trained (stages {trained}): the optimizer's epsilon rounds "
      "to 0 in float16 and the first update is NaN; use 'bfloat16' or 'float32' (model.dtype may stay float16)"
    )
  if "self_distill" in names:
    errors += ema_precision_errors(config)
  if "pretrain" in names and hf_dir:
    errors.append(
      f"field 'model.hf_dir' = {hf_dir!r} is set, but the 'pretrain' stage trains the base model from scratch; "
      "drop one of them"
    )
  if "pretrain" in names and config.tokenizer.path:
    # The base model would be trained on one vocabulary and read with another.
    errors.append(
      f"field 'tokenizer.path' = {config.tokenizer.path!r} is set, but the 'pretrain' stage trains the base model "
      "on the task tokenizer it builds (field 'pretrain.tokenizer_vocab_size'); drop one of them"
    )
  for stage, prefix in _READS_PROBLEMS.items():
    if stage in names:  # A plan-only run needs no prompts.
      errors += problems_errors(config[prefix.split(".")[0]].problems, prefix)
  if "eval" in names:
    # base is the base model and ssd the sft stage's; every other model is a self_distill method's.
    methods = comma_list(config.self_distill.methods)
    untrained = [m for m in comma_list(config.eval.models) if m not in ("base", "ssd", *methods)]
    if untrained:
      errors.append(
        f"field 'eval.models' names {untrained}, which field 'self_distill.methods' = "
        f"{config.self_distill.methods!r} does not train: add them to self_distill.methods or drop them from "
        "eval.models"
      )
    spec = config.eval.checkpoints.strip()
    if spec == "all" or (spec and int_list_ok(spec)):  # A malformed list is the value check's error.
      errors += [e for stage in evaluated_training_stages(config) for e in _kept_checkpoint_errors(config, stage)]
  return errors


def _kept_checkpoint_errors(config: ml_collections.ConfigDict, stage: str) -> list[str]:
  """`eval.checkpoints` may name only steps the training stage saves and still keeps (its newest
  `max_to_keep`): anything else would be found missing after all the training."""
  section = config[stage]
  saved = sorted({*range(section.checkpoint_every, section.steps + 1, section.checkpoint_every), section.steps})
  kept = saved[-section.max_to_keep :]
  spec = config.eval.checkpoints.strip()
  keep = f"field '{stage}.max_to_keep' = {section.max_to_keep}"
  if spec == "all":
    if len(saved) <= section.max_to_keep:
      return []
    return [
      f"field 'eval.checkpoints' = 'all' evaluates every checkpoint {stage} saves (steps {saved}), but {keep} "
      f"keeps the newest {section.max_to_keep}: raise it to {len(saved)}, or list the steps to evaluate"
    ]
  missing = [s for s in map(int, comma_list(spec)) if s not in kept]
  if not missing:
    return []
  return [
    f"field 'eval.checkpoints' names steps {missing}, which {stage} does not keep: it saves steps {saved} "
    f"(field '{stage}.checkpoint_every' = {section.checkpoint_every}) and {keep} keeps {kept}"
  ]
