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

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 absorbs the devices the other axes leave.
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.topology = ""  # e.g. "v5e:2x2": the TPU slice the plan stage compiles for.

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ""  # Defaults to model.hf_dir.

  c.sampling = _sampling_config(temperature=1.0, top_k=0, top_p=1.0, n=1)
  c.eval_sampling = _sampling_config(temperature=1.0, top_k=0, top_p=1.0, n=8)

  c.forward = ml_collections.ConfigDict()
  c.forward.batch_size = 2
  c.forward.seq_len = 16
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


@dataclasses.dataclass(frozen=True)
class Check:
  """One value rule: `ok(value)` must hold for the field at `path`."""

  path: str
  ok: Callable[[Any], bool]
  expected: str


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
    Check("stages", lambda v: all(s.strip() in STAGES for s in v.split(",") if s.strip()),
          f"comma-separated stages from {STAGES}"),
    Check("model.dtype", lambda v: v in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
    Check("model.param_dtype", lambda v: v in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
    Check("mesh.data", lambda v: v == -1 or v >= 1, "a positive axis size or -1"),
    Check("mesh.fsdp", lambda v: v == -1 or v >= 1, "a positive axis size or -1"),
    Check("mesh.tensor", lambda v: v == -1 or v >= 1, "a positive axis size or -1"),
    Check("forward.batch_size", lambda v: v >= 1, "a batch size >= 1"),
    Check("forward.seq_len", lambda v: v >= 1, "a sequence length >= 1"),
    *_sampling_checks("sampling"),
    *_sampling_checks("eval_sampling"),
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
      errors.append(
          f"field '{path}' must be {type(known[path]).__name__}, got {type(value).__name__} {value!r}")
  for path in known:
    if path not in given:
      errors.append(f"field '{path}' is missing (start config files from ssd_jax.config.base_config())")
  return errors


def mesh_shape(config: ml_collections.ConfigDict, device_count: int) -> dict[str, int]:
  """Resolves the -1 axis of `config.mesh` against `device_count`; raises ConfigError naming the field."""
  sizes = {axis: int(config.mesh[axis]) for axis in ("data", "fsdp", "tensor")}
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ConfigError(f"only one of mesh.{', mesh.'.join(free)} may be -1")
  fixed = 1
  for s in sizes.values():
    fixed *= s if s != -1 else 1
  if free:
    if device_count % fixed:
      raise ConfigError(
          f"mesh.{free[0]}=-1 cannot absorb {device_count} devices: the other axes multiply to {fixed}")
    sizes[free[0]] = device_count // fixed
  elif fixed != device_count:
    raise ConfigError(
        f"mesh (data={sizes['data']}, fsdp={sizes['fsdp']}, tensor={sizes['tensor']}) multiplies to {fixed}, "
        f"but there are {device_count} devices")
  return sizes


def validate(config: ml_collections.ConfigDict, *, schema: ml_collections.ConfigDict | None = None,
             device_count: int | None = None) -> None:
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
