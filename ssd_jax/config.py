"""Config schema and validation.

Every config file starts from `base_config()` and overrides what it needs. `validate` runs before any
expensive work and reports every problem at once, each naming its field (`train.learning_rate`), so a
typo on a pod costs seconds, not a queued-resource slot.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator
from typing import Any

import ml_collections

from ssd_jax.data.chat import DEFAULT_SYSTEM_PROMPT

STAGES = ("forward", "pretrain", "synthesize", "sft", "eval", "self_distill", "report", "plan")


class ConfigError(ValueError):
  """A config names an unknown field, has a wrong type, or an impossible value."""


def base_config() -> ml_collections.ConfigDict:
  """The full schema with defaults; every runnable config overrides fields of this one."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Comma-separated, run in order; see STAGES.
  c.stages = "forward"

  c.model = ml_collections.ConfigDict()
  c.model.preset = "tiny_qwen3"  # A name from ssd_jax.model.presets.
  c.model.hf_dir = ""  # A Hugging Face checkpoint directory; when set, its config.json wins over preset.
  c.model.dtype = "bfloat16"  # Activations.
  c.model.param_dtype = "bfloat16"
  c.model.remat = "none"
  c.model.attention = "auto"  # 'xla', 'splash' (Pallas TPU flash attention) or 'auto' (splash on TPU meshes).
  c.model.scan_layers = False  # One scanned block instead of num_layers unrolled ones: faster compiles, less memory.

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 absorbs the devices the other axes leave.
  c.mesh.fsdp = 1
  c.mesh.expert = 1  # Expert parallelism (MoE models); it also splits the batch.
  c.mesh.tensor = 1
  c.mesh.topology = ""  # e.g. "v5e:2x2": the TPU slice the plan stage compiles for.

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ""  # Defaults to model.hf_dir.

  c.sampling = _sampling_config(temperature=1.0, top_k=0, top_p=1.0, n=1)
  c.eval_sampling = _sampling_config(temperature=1.0, top_k=0, top_p=1.0, n=8)

  c.plan = ml_collections.ConfigDict()
  c.plan.prompt_len = 1024  # Prompt width the generation program is compiled for.
  c.plan.hbm_gib = 0.0  # HBM per chip; 0 takes the chip's published size.

  c.forward = ml_collections.ConfigDict()
  c.forward.batch_size = 2
  c.forward.seq_len = 16
  _add_ssd_sections(c)
  from ssd_jax.methods.self_distill_config import self_distill_config  # Here: it registers checks with this module.

  c.self_distill = self_distill_config()
  return c


def _sampling_config(*, temperature: float, top_k: int, top_p: float, n: int) -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.temperature = temperature
  s.top_k = top_k
  s.top_p = top_p
  s.min_p = 0.0
  s.n = n
  s.max_new_tokens = 256
  s.batch_size = 8
  return s


PROBLEM_SOURCES = ("builtin", "jsonl", "humaneval", "tfds")
EVAL_MODELS = ("base", "ssd", "sdsd", "sdpo")


def _add_ssd_sections(c: ml_collections.ConfigDict) -> None:
  """The SSD pipeline: pretrain (built-in task only), synthesize, sft, eval; paper values by default."""
  # Shape changes to a preset for a model trained from scratch; 0 keeps the preset's value.
  c.model.overrides = ml_collections.ConfigDict(
    dict(
      hidden_size=0,
      intermediate_size=0,
      num_layers=0,
      num_heads=0,
      num_kv_heads=0,
      head_dim=0,
      max_position_embeddings=0,
    )
  )

  c.prompting = ml_collections.ConfigDict()
  c.prompting.system_prompt = DEFAULT_SYSTEM_PROMPT  # "" leaves the system turn to the chat template.
  c.prompting.include_public_tests = False

  c.pretrain = _training_config(
    steps=300,
    warmup_steps=30,
    learning_rate=3e-3,
    end_learning_rate=3e-4,
    global_batch_size=16,
    seq_len=256,
    checkpoint_every=100,
  )
  c.pretrain.num_examples = 4000  # Built-in task pre-training problems (one answer each).
  c.pretrain.corruption_rate = 0.1  # Share of wrong answers in the corpus.
  # Share of examples laid out as the self-distillation teacher sees them (the question with a correct
  # demonstration and/or sandbox feedback on a wrong attempt, then a correct answer).
  c.pretrain.context_share = 0.0
  c.pretrain.tokenizer_vocab_size = 512

  c.synthesize = ml_collections.ConfigDict()
  c.synthesize.problems = _problems_config("synth")
  c.synthesize.prompts_per_chunk = 256  # Prompts sampled between record writes: the unit of resumption.
  c.synthesize.records_per_shard = 1024

  # SSD paper, instruct models: AdamW (0.9, 0.95), wd 0.1, cosine 5e-6 -> 1e-6, batch 32 x 65,536 tokens.
  c.sft = _training_config(
    steps=2500,
    warmup_steps=250,
    learning_rate=5e-6,
    end_learning_rate=1e-6,
    global_batch_size=32,
    seq_len=65536,
    checkpoint_every=250,
  )
  c.sft.drop_degenerate = True  # Drop empty outputs and one-line stubs, nothing else.

  c.eval = ml_collections.ConfigDict()
  c.eval.problems = _problems_config("eval")
  c.eval.models = "base,ssd"  # Comma-separated, from EVAL_MODELS.
  c.eval.ks = "1,4,8,16"  # pass@k for these k (those above eval_sampling.n are dropped).
  c.eval.timeout_s = 10.0  # Wall-clock limit per test.
  c.eval.memory_mb = 1024
  c.eval.workers = 0  # Parallel sandbox executions; 0 means one per CPU.
  c.eval.bootstrap = 1000  # Bootstrap replicates for the confidence intervals.


def _problems_config(split: str) -> ml_collections.ConfigDict:
  p = ml_collections.ConfigDict()
  p.source = "builtin"  # One of PROBLEM_SOURCES.
  p.path = ""  # JSONL / LiveCodeBench file, TFDS dataset directory, or HumanEval file ("" = the package's).
  p.split = split  # Built-in task split, or TFDS split.
  p.num_problems = 0  # The first N problems; 0 means all (the built-in task needs N > 0).
  p.dedup = True  # Drop problems whose statement repeats an earlier one.
  return p


def _training_config(
  *,
  steps: int,
  warmup_steps: int,
  learning_rate: float,
  end_learning_rate: float,
  global_batch_size: int,
  seq_len: int,
  checkpoint_every: int,
) -> ml_collections.ConfigDict:
  t = ml_collections.ConfigDict()
  t.steps = steps
  t.warmup_steps = warmup_steps
  t.learning_rate = learning_rate  # Peak, after linear warm-up; cosine decay to end_learning_rate.
  t.end_learning_rate = end_learning_rate
  t.b1 = 0.9
  t.b2 = 0.95
  t.weight_decay = 0.1
  t.grad_clip_norm = 1.0  # 0 disables clipping.
  t.global_batch_size = global_batch_size  # Packed rows per optimizer step, over all hosts.
  t.seq_len = seq_len  # Tokens per packed row.
  t.grad_accum_steps = 1
  t.loss_chunk_size = 1024  # Sequence chunk of the cross-entropy: [B, chunk, V] logits at a time.
  t.checkpoint_every = checkpoint_every
  t.max_to_keep = 3
  t.log_every = 10
  t.async_checkpointing = True
  t.tensorboard = True
  t.progress_bar = True
  return t


@dataclasses.dataclass(frozen=True)
class Check:
  """One value rule: `ok(value)` must hold for the field at `path`."""

  path: str
  ok: Callable[[Any], bool]
  expected: str


def _training_checks(prefix: str) -> list[Check]:
  return [
    Check(f"{prefix}.steps", lambda v: v >= 1, "at least 1 step"),
    Check(f"{prefix}.warmup_steps", lambda v: v >= 0, "warm-up steps >= 0 (and <= steps)"),
    Check(f"{prefix}.learning_rate", lambda v: v > 0, "a learning rate > 0"),
    Check(f"{prefix}.end_learning_rate", lambda v: v >= 0, "a final learning rate >= 0"),
    Check(f"{prefix}.b1", lambda v: 0 <= v < 1, "b1 in [0, 1)"),
    Check(f"{prefix}.b2", lambda v: 0 <= v < 1, "b2 in [0, 1)"),
    Check(f"{prefix}.weight_decay", lambda v: v >= 0, "weight decay >= 0"),
    Check(f"{prefix}.grad_clip_norm", lambda v: v >= 0, "a clip norm >= 0 (0 means off)"),
    Check(f"{prefix}.global_batch_size", lambda v: v >= 1, "a batch size >= 1"),
    Check(f"{prefix}.seq_len", lambda v: v >= 2, "a sequence length >= 2"),
    Check(f"{prefix}.grad_accum_steps", lambda v: v >= 1, "at least 1 micro-batch per step"),
    Check(f"{prefix}.loss_chunk_size", lambda v: v >= 1, "a chunk size >= 1"),
    Check(f"{prefix}.checkpoint_every", lambda v: v >= 1, "a checkpoint interval >= 1"),
    Check(f"{prefix}.max_to_keep", lambda v: v >= 1, "at least 1 checkpoint kept"),
    Check(f"{prefix}.log_every", lambda v: v >= 1, "a logging interval >= 1"),
  ]


def _problems_checks(prefix: str) -> list[Check]:
  return [
    Check(f"{prefix}.source", lambda v: v in PROBLEM_SOURCES, f"one of {PROBLEM_SOURCES}"),
    Check(f"{prefix}.num_problems", lambda v: v >= 0, "a count >= 0 (0 means all)"),
  ]


def _int_list_ok(text: str) -> bool:
  parts = [p.strip() for p in text.split(",") if p.strip()]
  return bool(parts) and all(p.isdigit() and int(p) >= 1 for p in parts)


def _ssd_checks() -> list[Check]:
  return [
    *[
      Check(f"model.overrides.{name}", lambda v: v >= 0, "a size >= 0 (0 keeps the preset's)")
      for name in (
        "hidden_size",
        "intermediate_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "max_position_embeddings",
      )
    ],
    *_training_checks("pretrain"),
    Check("pretrain.num_examples", lambda v: v >= 1, "at least 1 example"),
    Check("pretrain.corruption_rate", lambda v: 0 <= v <= 1, "a rate in [0, 1]"),
    Check("pretrain.context_share", lambda v: 0 <= v <= 1, "a share in [0, 1]"),
    Check("pretrain.tokenizer_vocab_size", lambda v: v >= 259, "a vocabulary >= 259 (3 special + 256 bytes)"),
    *_problems_checks("synthesize.problems"),
    Check("synthesize.prompts_per_chunk", lambda v: v >= 1, "at least 1 prompt per chunk"),
    Check("synthesize.records_per_shard", lambda v: v >= 1, "at least 1 record per shard"),
    *_training_checks("sft"),
    *_problems_checks("eval.problems"),
    Check(
      "eval.models",
      lambda v: bool(v.strip()) and all(m.strip() in EVAL_MODELS for m in v.split(",")),
      f"comma-separated models from {EVAL_MODELS}",
    ),
    Check("eval.ks", _int_list_ok, "comma-separated integers >= 1, e.g. '1,4,8'"),
    Check("eval.timeout_s", lambda v: v > 0, "seconds > 0"),
    Check("eval.memory_mb", lambda v: v >= 1, "megabytes >= 1"),
    Check("eval.workers", lambda v: v >= 0, "a worker count >= 0 (0 means one per CPU)"),
    Check("eval.bootstrap", lambda v: v >= 1, "at least 1 bootstrap replicate"),
  ]


def _sampling_checks(prefix: str) -> list[Check]:
  return [
    Check(f"{prefix}.temperature", lambda v: v >= 0, "a temperature >= 0 (0 means greedy)"),
    Check(f"{prefix}.top_k", lambda v: True, "an int (<= 0 means off)"),
    Check(f"{prefix}.top_p", lambda v: 0 < v <= 1, "top_p in (0, 1] (1 means off)"),
    Check(f"{prefix}.min_p", lambda v: 0 <= v < 1, "min_p in [0, 1) (0 means off)"),
    Check(f"{prefix}.n", lambda v: v >= 1, "at least 1 sample per prompt"),
    Check(f"{prefix}.max_new_tokens", lambda v: v >= 1, "at least 1 new token"),
    Check(f"{prefix}.batch_size", lambda v: v >= 1, "a batch size >= 1"),
  ]


VALUE_CHECKS: list[Check] = [
  Check(
    "stages",
    lambda v: all(s.strip() in STAGES for s in v.split(",") if s.strip()),
    f"comma-separated stages from {STAGES}",
  ),
  Check("model.dtype", lambda v: v in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
  Check("model.attention", lambda v: v in ("auto", "xla", "splash"), "'auto', 'xla' or 'splash'"),
  Check("model.param_dtype", lambda v: v in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
  Check("mesh.data", lambda v: v == -1 or v >= 1, "a positive axis size or -1"),
  Check("mesh.fsdp", lambda v: v == -1 or v >= 1, "a positive axis size or -1"),
  Check("mesh.expert", lambda v: v == -1 or v >= 1, "a positive axis size or -1"),
  Check("mesh.tensor", lambda v: v == -1 or v >= 1, "a positive axis size or -1"),
  Check("plan.prompt_len", lambda v: v >= 1, "a prompt width >= 1"),
  Check("plan.hbm_gib", lambda v: v >= 0, "GiB >= 0 (0 means the chip's own)"),
  Check("forward.batch_size", lambda v: v >= 1, "a batch size >= 1"),
  Check("forward.seq_len", lambda v: v >= 1, "a sequence length >= 1"),
  *_sampling_checks("sampling"),
  *_sampling_checks("eval_sampling"),
  *_ssd_checks(),
]


def register_checks(*checks: Check) -> None:
  """Lets a stage's module add rules for the fields it owns."""
  VALUE_CHECKS.extend(checks)


def _leaves(c: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
  for key, value in c.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, path + ".")
    else:
      yield path, value


def _get(c: ml_collections.ConfigDict, path: str) -> Any:
  for part in path.split("."):
    c = c[part]
  return c


def _type_ok(default: Any, value: Any) -> bool:
  if isinstance(default, bool) or isinstance(value, bool):
    return isinstance(default, bool) and isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float))
  return isinstance(value, type(default))


def schema_errors(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict) -> list[str]:
  """Unknown fields and wrong types, each message naming the field."""
  errors = []
  known = dict(_leaves(schema))
  given = dict(_leaves(config))
  for path, value in given.items():
    if path not in known:
      close = difflib.get_close_matches(path, known, n=1)
      hint = f" (did you mean '{close[0]}'?)" if close else ""
      errors.append(f"unknown field '{path}'{hint}")
    elif not _type_ok(known[path], value):
      errors.append(f"field '{path}' must be {type(known[path]).__name__}, got {type(value).__name__} {value!r}")
  for path in known:
    if path not in given:
      errors.append(f"field '{path}' is missing (start config files from ssd_jax.config.base_config())")
  return errors


def mesh_shape(config: ml_collections.ConfigDict, device_count: int) -> dict[str, int]:
  """Resolves the -1 axis of `config.mesh` against `device_count`; raises ConfigError naming the field."""
  sizes = {axis: int(config.mesh[axis]) for axis in ("data", "fsdp", "expert", "tensor")}
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ConfigError(f"only one of mesh.{', mesh.'.join(free)} may be -1")
  fixed = 1
  for s in sizes.values():
    fixed *= s if s != -1 else 1
  if free:
    if device_count % fixed:
      raise ConfigError(f"mesh.{free[0]}=-1 cannot absorb {device_count} devices: the other axes multiply to {fixed}")
    sizes[free[0]] = device_count // fixed
  elif fixed != device_count:
    raise ConfigError(
      f"mesh ({', '.join(f'{a}={n}' for a, n in sizes.items())}) multiplies to {fixed}, "
      f"but there are {device_count} devices"
    )
  return sizes


def validate(
  config: ml_collections.ConfigDict, *, schema: ml_collections.ConfigDict | None = None, device_count: int | None = None
) -> None:
  """Raises ConfigError listing every problem in `config`, each naming its field.

  Args:
    config: the config to check.
    schema: the reference schema; `base_config()` when None.
    device_count: when given, the mesh must multiply to it.
  """
  schema = base_config() if schema is None else schema
  errors = schema_errors(config, schema)
  if not errors:
    for check in VALUE_CHECKS:
      try:
        value = _get(config, check.path)
      except (KeyError, AttributeError):
        continue
      if not check.ok(value):
        errors.append(f"field '{check.path}' = {value!r} is invalid: expected {check.expected}")
  if not errors and device_count is not None:
    try:
      mesh_shape(config, device_count)
    except ConfigError as e:
      errors.append(str(e))
  if errors:
    raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
